// Last line of defence for PID 1: an uncaught exception or unhandled promise
// rejection is logged at fatal level and the agent keeps serving (Node's
// default would be to exit, which as PID 1 panics the guest kernel).
import type { Logger } from '../log';
import type { ProcessLike } from './shutdown';

/** Install the handlers; returns a function that removes them. */
export function guard(log: Logger, proc: ProcessLike = process): () => void {
  const onException = (err: unknown, origin?: string) => {
    try {
      log.fatal({ err, origin }, 'uncaught exception; continuing');
    } catch {
      // logging itself failed: nothing else to do, and never rethrow
    }
  };
  const onRejection = (reason: unknown) => {
    try {
      log.fatal({ err: reason }, 'unhandled promise rejection; continuing');
    } catch {
      // as above
    }
  };
  proc.on('uncaughtException', onException);
  proc.on('unhandledRejection', onRejection);
  return () => {
    proc.off('uncaughtException', onException);
    proc.off('unhandledRejection', onRejection);
  };
}
