import { describe, expect, it } from 'vitest';
import { HTTP2_PREFACE, classify } from '../../agent/src/transport/sniff';

describe('classify', () => {
  it('the preface is exactly the 24-byte HTTP/2 client preface', () => {
    expect(HTTP2_PREFACE.length).toBe(24);
    expect(HTTP2_PREFACE.toString('latin1')).toBe('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  });

  it('needs more bytes while the input is a strict prefix of the preface', () => {
    expect(classify(Buffer.alloc(0))).toBeUndefined();
    for (let n = 1; n < 24; n++) expect(classify(HTTP2_PREFACE.subarray(0, n))).toBeUndefined();
  });

  it('is gRPC once all 24 bytes match, whatever follows', () => {
    expect(classify(HTTP2_PREFACE)).toBe('grpc');
    expect(classify(Buffer.concat([HTTP2_PREFACE, Buffer.from([0, 0, 18, 4, 0])]))).toBe('grpc');
  });

  it('is ttrpc as soon as the first byte is not P', () => {
    // A ttrpc header: 4-byte big-endian length, stream id, type, flags.
    expect(classify(Buffer.from([0]))).toBe('ttrpc');
    expect(classify(Buffer.from([0, 0, 0, 10, 0, 0, 0, 1, 1, 0]))).toBe('ttrpc');
    expect(classify(Buffer.from('Q'))).toBe('ttrpc');
  });

  it('is ttrpc at the first byte that diverges from the preface', () => {
    for (let i = 0; i < 24; i++) {
      const b = Buffer.from(HTTP2_PREFACE.subarray(0, i + 1));
      b[i] = b[i]! ^ 0x20;
      expect(classify(b)).toBe('ttrpc');
      expect(classify(b.subarray(0, i))).toBeUndefined();
    }
    expect(classify(Buffer.from('PRX'))).toBe('ttrpc');
    expect(classify(Buffer.from('PRI * HTTP/1.1\r\n'))).toBe('ttrpc');
  });
});
