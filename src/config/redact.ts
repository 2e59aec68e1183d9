// Secrets (stream passwords) never reach logs, state or `ctl` output (CONTRACT §2).

/** `rtsp://user:***@host/…`: every URL password in the text replaced (ffmpeg quotes URLs in its messages). */
export function redactUrl(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s'"]*):[^@/\s'"]*@/gi, '$1:***@');
}
