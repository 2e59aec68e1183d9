// Reading a command request off MQTT (CONTRACT §3), pure. MQTT 5 carries the reply address as
// Response Topic + Correlation Data; 3.1.1 puts "replyTo" and "id" into the payload beside
// the arguments (removed before the arguments are validated). If both are present, MQTT 5 wins.
import { isObject, MAX_REQUEST_BYTES, parseBounded, requestId } from '../commands/envelope.js';
import type { Topics } from './topics.js';


export interface ReplyAddress {
  topic: string;
  /** MQTT 5 Correlation Data, echoed back. */
  correlationData?: Buffer;
  /** 3.1.1 request id, echoed back in the reply payload (null when it was not a short string or a safe integer). */
  id?: string | number | null;
}

export type ParsedRequest =
  | { ok: true; cmd: string; args: unknown; reply: ReplyAddress | null }
  | { ok: false; cmd: string; reason: string; reply: ReplyAddress | null; replyRefused?: string };

export interface RequestPacket {
  topic: string;
  payload: Buffer;
  responseTopic?: string | undefined;
  correlationData?: Buffer | undefined;
}

export function parseRequest(packet: RequestPacket, node: string, topics: Topics): ParsedRequest {
  const parsed = topics.parse(packet.topic);
  const cmd = parsed && parsed.node === node && parsed.kind === 'cmd' && parsed.rest.length === 1 ? parsed.rest[0]! : '';
  let reply: ReplyAddress | null = packet.responseTopic
    ? { topic: packet.responseTopic, ...(packet.correlationData ? { correlationData: packet.correlationData } : {}) }
    : null;
  const refuse = (why: string): ParsedRequest => ({ ok: false, cmd, reason: why, reply: null, replyRefused: why });

  if (packet.payload.length > MAX_REQUEST_BYTES) {
    // Never carried out, but a 3.1.1 requester's reply address is inside the payload: read it
    // for that alone, so the requester hears why instead of waiting out its timeout (CONTRACT
    // §3: an error reply when there is a reply address). The broker's max_packet_size bounds it.
    reply ??= payloadReplyAddress(packet.payload);
    if (reply && !topics.isOwnReplyTopic(node, reply.topic)) return refuse(`reply topic ${JSON.stringify(reply.topic)} is outside ${topics.replyBase(node)}/`);
    return { ok: false, cmd, reason: `request of ${packet.payload.length} bytes is larger than ${MAX_REQUEST_BYTES}`, reply };
  }
  let body: unknown = {};
  let parseError: string | null = null;
  if (packet.payload.length > 0) {
    const parsed = parseBounded(packet.payload);
    if (parsed.ok) {
      body = parsed.value;
    } else {
      parseError = parsed.reason;
      // Too deep, or not UTF-8: the 3.1.1 reply address may still be readable, to say why.
      reply ??= payloadReplyAddress(packet.payload);
    }
  }
  let args: unknown = body;
  if (isObject(body)) {
    const { replyTo, id, ...rest } = body;
    args = rest;
    if (!reply && typeof replyTo === 'string') reply = { topic: replyTo, ...(id !== undefined ? { id: requestId(id) } : {}) };
    else if (reply && id !== undefined && !reply.correlationData) reply = { ...reply, id: requestId(id) };
  } else if (!parseError) {
    parseError = 'a request must be a JSON object';
  }
  if (reply && !topics.isOwnReplyTopic(node, reply.topic)) {
    return refuse(`reply topic ${JSON.stringify(reply.topic)} is outside ${topics.replyBase(node)}/`);
  }
  if (!cmd) return { ok: false, cmd, reason: `not a command topic: ${packet.topic}`, reply };
  if (parseError) return { ok: false, cmd, reason: parseError, reply };
  return { ok: true, cmd, args, reply };
}

/** The 3.1.1 reply address of a payload, or null (not JSON, not an object, no replyTo string). */
function payloadReplyAddress(payload: Buffer): ReplyAddress | null {
  let body: unknown;
  try {
    body = JSON.parse(payload.toString('utf8'));
  } catch {
    return null;
  }
  if (!isObject(body)) return null;
  const { replyTo, id } = body;
  return typeof replyTo === 'string' ? { topic: replyTo, ...(id !== undefined ? { id: requestId(id) } : {}) } : null;
}
