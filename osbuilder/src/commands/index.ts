// Every osbuilder verb, in `osbuilder --help` order.
import { initrdCommand } from '../initrd/command';
import type { Command } from './types';

export const COMMANDS: Command[] = [initrdCommand];
