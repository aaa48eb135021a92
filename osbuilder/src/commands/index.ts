// Every osbuilder verb, in `osbuilder --help` order.
import type { Command } from './types';

export const COMMANDS: Command[] = [];
