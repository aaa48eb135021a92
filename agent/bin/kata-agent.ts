// kata-agent: the guest agent (PID 1 in the guest, or a plain process on a host).
import { main } from '../src/main';

main().catch((err: unknown) => {
  // Only startup can fail here (e.g. the listen address is unusable). As PID 1 we must not exit:
  // the kernel would panic. Log and stay up so the console shows why.
  process.stderr.write(`kata-agent: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  if (process.pid !== 1) process.exit(1);
  setInterval(() => undefined, 1 << 30);
});
