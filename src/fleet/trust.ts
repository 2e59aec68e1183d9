// What a node needs to check signed commands (CONTRACT §7): the fleet CA (`fleet.ca`, default
// `mqtt.ca`), the CRL sources and the replay record. Loaded with the fleet link, and only when
// commands must be signed: X.509 and JWS code stays out of a node that has no fleet.
import { readFile } from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import { ReplayGuard } from '../commands/replay.js';
import { SignedCommands } from '../commands/signed.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import { x509 } from '../platform/x509.js';
import { FleetRevocation } from './revocation.js';
import { pemCertificates } from '../platform/pem.js';


export interface Trust {
  commands: SignedCommands;
  revocation: FleetRevocation;
  replay: ReplayGuard;
}

/** The fleet CA bundle's certificates; throws naming the file when there are none. */
export async function readAnchors(file: string): Promise<x509.X509Certificate[]> {
  const pems = pemCertificates(await readFile(file, 'utf8'));
  if (pems.length === 0) throw new Error(`fleet.ca: no certificate in ${file}`);
  return pems.map((p) => new x509.X509Certificate(p));
}

export async function loadTrust(deps: {
  nodeId: string; stateDir: string; mqtt: NonNullable<Config['mqtt']>; fleet: Config['fleet'];
  clock: Clock; clockSynced(): boolean | null; log: Logger;
}): Promise<Trust> {
  const caFile = deps.fleet?.ca ?? deps.mqtt.ca;
  if (!caFile) throw new Error('fleet.ca: required to verify signed commands');
  const anchors = await readAnchors(caFile);
  const revocation = new FleetRevocation({ crlFile: deps.fleet?.crl, stateDir: deps.stateDir, anchors, clock: deps.clock, log: deps.log });
  const replay = new ReplayGuard({ stateDir: deps.stateDir, log: deps.log });
  await replay.load();
  const commands = new SignedCommands({ nodeId: deps.nodeId, anchors, revocation, replay, clock: deps.clock, clockSynced: deps.clockSynced });
  deps.log.info({ ca: caFile, anchors: anchors.length, crl: deps.fleet?.crl ?? null }, 'commands must be signed by a principal of the fleet CA');
  return { commands, revocation, replay };
}
