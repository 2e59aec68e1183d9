// Revocation of principals (CONTRACT §7, Revocation). Two sources of the fleet CA's CRL: the
// file `fleet.crl` (re-read when it changes, checked at least every 60 s) and the retained,
// CA-signed `<prefix>/_fleet/crl` (kept in node.stateDir, so it holds across restarts without a
// broker). The CRL with the highest number wins. A configured CRL that is expired or was never
// loaded leaves revocation unknown: custodian and admin commands are then refused.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import type { Component } from '../lifecycle/component.js';
import type { Clock } from '../platform/clock.js';
import { writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import { x509 } from '../platform/x509.js';

export const RETAINED_CRL_FILE = 'fleet-crl.pem';
const CHECK_EVERY_MS = 60_000;

export interface Crl {
  crl: x509.X509Crl;
  number: number;
  source: 'file' | 'broker';
}

/** What the command checks read. */
export interface RevocationView {
  /** Whether `fleet.crl` is set (no CRL configured: no revocation check). */
  readonly configured: boolean;
  isRevoked(cert: x509.X509Certificate): boolean;
  /** A CRL is loaded and not past its nextUpdate. */
  current(nowMs: number): boolean;
}

/** A CRL's number (0 when it has none). */
export function crlNumber(crl: x509.X509Crl): number {
  const ext = crl.getExtension(id_ce_cRLNumber);
  return ext ? AsnConvert.parse(ext.value, CRLNumber).value : 0;
}

/** Parses PEM or DER, and checks it is signed by one of the CA certificates; throws saying why not. */
export async function readCrl(bytes: Buffer | string, anchors: readonly x509.X509Certificate[]): Promise<x509.X509Crl> {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('latin1');
  const crl = text.includes('-----BEGIN X509 CRL-----') ? new x509.X509Crl(text) : new x509.X509Crl(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  for (const ca of anchors) {
    if (crl.issuer !== ca.subject) continue;
    if (await crl.verify({ publicKey: await ca.publicKey.export() })) return crl;
  }
  throw new Error(`CRL issued by "${crl.issuer}" is not signed by the fleet CA`);
}

/** The CRL that wins: the highest number; a tie keeps the one already held. Pure. */
export function better(held: Crl | null, offered: Crl): boolean {
  return held === null || offered.number > held.number;
}

export class FleetRevocation implements Component, RevocationView {
  readonly name = 'fleet-revocation';
  private best: Crl | null = null;
  private fileSeen = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: {
    /** fleet.crl, if set. */
    crlFile?: string | undefined;
    stateDir: string;
    anchors: readonly x509.X509Certificate[];
    clock: Clock;
    log: Logger;
    checkEveryMs?: number;
  }) {}

  get configured(): boolean {
    return this.deps.crlFile !== undefined;
  }

  async start(): Promise<void> {
    // The one kept from the broker, then the file: the higher number wins.
    try {
      const kept = await readFile(join(this.deps.stateDir, RETAINED_CRL_FILE), 'utf8');
      this.adopt(await readCrl(kept, this.deps.anchors), 'broker');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.deps.log.warn({ err: (err as Error).message }, 'the CRL kept from the broker is unreadable; waiting for the broker to send it again');
    }
    await this.checkFile();
    if (this.deps.crlFile !== undefined) {
      this.timer = setInterval(() => void this.checkFile(), this.deps.checkEveryMs ?? CHECK_EVERY_MS);
      this.timer.unref();
    }
    if (this.configured && !this.best) this.deps.log.error({ crlFile: this.deps.crlFile }, 'fleet.crl: no CRL could be loaded; custodian and admin commands are refused until one is');
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
  }

  /** The retained `<prefix>/_fleet/crl`: adopted (and kept) when it is the CA's and newer. */
  async offer(bytes: Buffer): Promise<void> {
    let crl: x509.X509Crl;
    try {
      crl = await readCrl(bytes, this.deps.anchors);
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'CRL from the broker refused');
      return;
    }
    if (this.adopt(crl, 'broker')) {
      await writeFileDurable(join(this.deps.stateDir, RETAINED_CRL_FILE), crl.toString('pem'))
        .catch((err: unknown) => this.deps.log.warn({ err }, 'CRL from the broker not kept on disk; it is used until the agent stops'));
    }
  }

  isRevoked(cert: x509.X509Certificate): boolean {
    return this.best !== null && this.best.crl.issuer === cert.issuer && this.best.crl.findRevoked(cert) !== null;
  }

  current(nowMs: number): boolean {
    const next = this.best?.crl.nextUpdate;
    return this.best !== null && (next === undefined || next.getTime() > nowMs);
  }

  /** The CRL in use: its number, source and expiry (for state and check). */
  status(): { number: number; source: string; nextUpdate: string | null } | null {
    if (!this.best) return null;
    return { number: this.best.number, source: this.best.source, nextUpdate: this.best.crl.nextUpdate?.toISOString() ?? null };
  }

  private adopt(crl: x509.X509Crl, source: Crl['source']): boolean {
    const offered: Crl = { crl, number: crlNumber(crl), source };
    if (!better(this.best, offered)) return false;
    this.best = offered;
    this.deps.log.info({ number: offered.number, source, nextUpdate: crl.nextUpdate?.toISOString() ?? null, revoked: crl.entries.length }, 'fleet CRL in use');
    return true;
  }

  /** Re-reads fleet.crl when its size, time or inode changed. */
  private async checkFile(): Promise<void> {
    const file = this.deps.crlFile;
    if (file === undefined) return;
    try {
      const st = await stat(file);
      const seen = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (seen === this.fileSeen) return;
      this.adopt(await readCrl(await readFile(file), this.deps.anchors), 'file');
      this.fileSeen = seen;
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message, crlFile: file }, 'fleet.crl could not be read');
    }
  }
}
