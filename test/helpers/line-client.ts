// A raw client of the control socket for hostile-input tests: writes any bytes, reads reply
// lines in order.
import { connect, type Socket } from 'node:net';

export interface Reply { id?: unknown; ok: boolean; data?: unknown; error?: { code: string; message: string } }

/** A raw client of the control socket: write any bytes, read reply lines in order. */
export class LineClient {
  private buffered = '';
  private readonly lines: string[] = [];
  private waiting: ((line: string) => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        this.lines.push(this.buffered.slice(0, nl));
        this.buffered = this.buffered.slice(nl + 1);
      }
      this.deliver();
    });
    socket.on('error', () => { /* the agent may close on us (oversize line) */ });
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  static open(path: string): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once('connect', () => resolve(new LineClient(socket)));
      socket.once('error', reject);
    });
  }

  private deliver(): void {
    if (this.waiting && this.lines.length > 0) {
      const w = this.waiting;
      this.waiting = undefined;
      w(this.lines.shift()!);
    }
  }

  /** Sends raw bytes and waits for the next reply line. */
  async ask(raw: string | Buffer, timeoutMs = 5_000): Promise<Reply> {
    this.socket.write(raw);
    return this.next(timeoutMs, raw.toString().slice(0, 80));
  }

  /** The next reply line (of requests already sent). */
  async next(timeoutMs = 5_000, what = 'a request'): Promise<Reply> {
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${what}`)), timeoutMs);
      this.waiting = (l) => { clearTimeout(timer); resolve(l); };
      this.deliver();
    });
    return JSON.parse(line) as Reply;
  }

  close(): void {
    this.socket.destroy();
  }
}
