// agent-ctl: talk to a guestkit/Kata agent over ttrpc or gRPC ("agent-ctl --help").
import { run } from '../src/client/ctl';

process.exitCode = await run(process.argv.slice(2));
