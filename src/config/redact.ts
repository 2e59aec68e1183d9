// Secrets (stream passwords) never reach logs, state or `ctl` output (CONTRACT §2).

/** `rtsp://user:***@host/…`: the password replaced; other sources unchanged. */
export function redactUrl(source: string): string {
  return source.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');
}
