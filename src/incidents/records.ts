// Records the node signs beside a sealed incident's clips after the seal, so that they travel
// upstream and to an examiner with the footage and are checked like the manifest (JCS + Ed25519
// under the node's key): a note (CONTRACT §6) as `notes/<n>.json`, a disclosure (CONTRACT §7)
// as `disclosures/<n>.json`.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeKey } from '../audit/keys.js';
import { signRecord, type ManifestSignature } from '../audit/manifest.js';
import { fsyncDir, writeFileDurable } from '../platform/durable.js';
import type { Disclosure, Incident, LegalBasis, Note, TriggerSigner } from './incident.js';

/** The folder of note records inside an incident folder. */
export const NOTES_DIR = 'notes';
/** The folder of disclosure records inside an incident folder (and upstream beside it). */
export const DISCLOSURES_DIR = 'disclosures';
/** Every record folder an incident folder may hold besides its clips. */
/** Where a sealed incident keeps the call recordings it holds (CONTRACT §8: `calls/<name>`). */
export const CALLS_DIR = 'calls';
/** A file a seal writes: `<camera>.mp4[.age]`, or a call's `calls/<name>[.age]` — safe characters, no path. */
export function isSealedFileName(name: string): boolean {
  return /^[a-z0-9][a-z0-9.-]*$/.test(name) || (name.startsWith(`${CALLS_DIR}/`) && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name.slice(CALLS_DIR.length + 1)));
}
export const RECORD_DIRS = [NOTES_DIR, DISCLOSURES_DIR] as const;
export type RecordDir = (typeof RECORD_DIRS)[number];

type SigningKey = Pick<NodeKey, 'publicKeyBase64' | 'sign'>;

export interface NoteRecord {
  incident: string;
  node: string;
  n: number;
  note: Note;
  onBehalfOf?: string;
  signer?: TriggerSigner | null;
  agent: { version: string };
}

/** What the examiner's copy says about a disclosure (CONTRACT §7). */
export interface DisclosureRecord {
  incident: string;
  node: string;
  n: number;
  at: string;
  /** SHA-256 of the manifest.json handed over: the record covers exactly those clips. */
  manifestSha256: string;
  legalBasis: LegalBasis;
  reference: string;
  agency: string;
  requestedBy: string;
  /** The custodian: signer CN, role, certificate (SHA-256 and the DER itself when signed). */
  custodian: { cn: string; role: string; certSha256: string; certificate?: string } | { by: string | null; signed: false };
  onBehalfOf?: string;
  agent: { version: string };
}

/** `<folder>/<n>.json`, relative to the incident folder (and its upstream prefix). */
export function recordName(folder: RecordDir, n: number): string {
  return `${folder}/${n}.json`;
}

/** `notes/<n>.json`, relative to the incident folder. */
export function noteRecordName(n: number): string {
  return recordName(NOTES_DIR, n);
}

/** A record's file text: signed, pretty-printed for people (verifiers re-canonicalise). */
export function signedRecordText<T extends object>(record: T, key: SigningKey): { text: string; signed: T & { signature: ManifestSignature } } {
  const signed = signRecord(record, key);
  return { signed, text: `${JSON.stringify(signed, null, 2)}\n` };
}

/**
 * Writes a record durably (file and folders fsynced) beside an incident's clips. The incident's
 * folder must be there already: a record never makes one without its clips.
 */
export async function writeIncidentRecord(incidentDir: string, folder: RecordDir, n: number, text: string): Promise<string> {
  const dir = join(incidentDir, folder);
  await mkdir(dir).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err; });
  const path = join(incidentDir, recordName(folder, n));
  await writeFileDurable(path, text);
  await fsyncDir(incidentDir);
  return path;
}

/** Writes a note's signed record before the note is acknowledged. */
export async function writeNoteRecord(args: {
  incidentDir: string; incident: Incident; note: Note; n: number; version: string;
  onBehalfOf?: string | undefined; signer?: TriggerSigner | null | undefined;
  key: SigningKey;
}): Promise<string> {
  const record: NoteRecord = {
    incident: args.incident.id, node: args.incident.node, n: args.n, note: args.note,
    ...(args.onBehalfOf !== undefined ? { onBehalfOf: args.onBehalfOf } : {}),
    ...(args.signer !== undefined ? { signer: args.signer } : {}),
    agent: { version: args.version },
  };
  return writeIncidentRecord(args.incidentDir, NOTES_DIR, args.n, signedRecordText(record, args.key).text);
}

/** The disclosure record of a disclosure just decided. Pure. */
export function disclosureRecord(incident: Incident, d: Disclosure, who: {
  signer?: TriggerSigner | null | undefined; certificate?: string | undefined; onBehalfOf?: string | undefined; version: string;
}): DisclosureRecord {
  return {
    incident: incident.id, node: incident.node, n: d.n, at: d.at, manifestSha256: d.manifestSha256,
    legalBasis: d.legalBasis, reference: d.reference, agency: d.agency, requestedBy: d.requestedBy,
    custodian: who.signer
      ? { ...who.signer, ...(who.certificate !== undefined ? { certificate: who.certificate } : {}) }
      : { by: d.by, signed: false },
    ...(who.onBehalfOf !== undefined ? { onBehalfOf: who.onBehalfOf } : {}),
    agent: { version: who.version },
  };
}
