// Every osbuilder verb, in `osbuilder --help` order.
import { imageCommand } from '../image/command';
import { initrdCommand } from '../initrd/command';
import { kernelCommand } from '../kernel/command';
import { packCommand } from '../pack/command';
import { runCommand } from '../run/command';
import { listDistrosCommand, newDistroCommand, rootfsCommand } from '../rootfs/command';
import type { Command } from './types';

export const COMMANDS: Command[] = [rootfsCommand, initrdCommand, imageCommand, kernelCommand, runCommand, packCommand, listDistrosCommand, newDistroCommand];
