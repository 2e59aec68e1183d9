// A note on a sealed incident (CONTRACT §6) is also a node-signed record beside its clips,
// `notes/<n>.json`, so that it travels upstream and to an examiner with the footage and can be
// checked like the manifest: JCS + Ed25519 under the node's key.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeKey } from '../audit/keys.js';
import { signRecord } from '../audit/manifest.js';
import { fsyncDir, writeFileDurable } from '../platform/durable.js';
import type { Incident, Note, TriggerSigner } from './incident.js';

/** The folder of note records inside an incident folder. */
export const NOTES_DIR = 'notes';

export interface NoteRecord {
  incident: string;
  node: string;
  n: number;
  note: Note;
  onBehalfOf?: string;
  signer?: TriggerSigner | null;
  agent: { version: string };
}

/** `notes/<n>.json`, relative to the incident folder. */
export function noteRecordName(n: number): string {
  return `${NOTES_DIR}/${n}.json`;
}

/** Writes the signed record durably (file and folder fsynced) before the note is acknowledged. */
export async function writeNoteRecord(args: {
  incidentDir: string; incident: Incident; note: Note; n: number; version: string;
  onBehalfOf?: string | undefined; signer?: TriggerSigner | null | undefined;
  key: Pick<NodeKey, 'publicKeyBase64' | 'sign'>;
}): Promise<string> {
  const record: NoteRecord = {
    incident: args.incident.id, node: args.incident.node, n: args.n, note: args.note,
    ...(args.onBehalfOf !== undefined ? { onBehalfOf: args.onBehalfOf } : {}),
    ...(args.signer !== undefined ? { signer: args.signer } : {}),
    agent: { version: args.version },
  };
  const signed = signRecord(record, args.key);
  // The incident's folder must be there already: a note never makes one without its clips.
  const dir = join(args.incidentDir, NOTES_DIR);
  await mkdir(dir).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err; });
  const path = join(args.incidentDir, noteRecordName(args.n));
  await writeFileDurable(path, `${JSON.stringify(signed, null, 2)}\n`);
  await fsyncDir(args.incidentDir);
  return path;
}
