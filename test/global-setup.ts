// Make sure the protocol descriptor matches agent/proto/*.proto before any test runs.
// @ts-expect-error plain .mjs module without types
import { generate } from '../agent/scripts/gen-descriptor.mjs';

export default function setup(): void {
  generate();
}
