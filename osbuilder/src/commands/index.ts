// Every osbuilder verb, in `osbuilder --help` order.
import { imageCommand } from '../image/command';
import { initrdCommand } from '../initrd/command';
import { packCommand } from '../pack/command';
import type { Command } from './types';

export const COMMANDS: Command[] = [initrdCommand, imageCommand, packCommand];
