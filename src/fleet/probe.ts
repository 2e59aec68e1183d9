// `camnode check`'s broker row: connect as the node would (its certificate), then prove the
// ACL lets it subscribe and publish on its own subtree by a round trip on its reply topic.
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { mqttOptions, type MqttConfig } from './link.js';
import { Topics } from './topics.js';
import { redactUrl } from '../config/redact.js';

export interface BrokerProbe { ok: boolean; detail: string; fix?: string }

export async function probeBroker(config: MqttConfig, nodeId: string, timeoutMs = 8_000): Promise<BrokerProbe> {
  const topics = new Topics(config.prefix);
  let options;
  try {
    options = await mqttOptions(config, nodeId, topics.status(nodeId));
  } catch (err) {
    return { ok: false, detail: `cannot read the TLS files: ${(err as Error).message}`, fix: 'check mqtt.ca, mqtt.cert and mqtt.key (see docs/fleet-setup.md)' };
  }
  // Its own client id and no will: the check must not knock the running agent off or mark it offline.
  const { will: _will, ...rest } = options;
  const client = mqtt.connect(config.url, { ...rest, clientId: `camnode-${nodeId}-check-${randomBytes(3).toString('hex')}`, connectTimeout: timeoutMs });
  const timer = (what: string) => new Promise<never>((_, reject) => setTimeout(() => reject(new Error(what)), timeoutMs).unref());
  try {
    await Promise.race([
      new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
      }),
      timer(`no answer within ${timeoutMs} ms`),
    ]);
  } catch (err) {
    client.end(true);
    return { ok: false, detail: `${redactUrl(config.url)}: ${(err as Error).message}`, fix: 'check the broker address, that it is reachable, and that this node\'s certificate is signed by the fleet CA with CN = node id' };
  }
  try {
    const probe = `${topics.replyBase(nodeId)}/check-${randomBytes(4).toString('hex')}`;
    const granted = await client.subscribeAsync(probe, { qos: 1 });
    if (granted.some((g) => g.qos === 128 || g.qos > 2)) {
      return { ok: false, detail: `${redactUrl(config.url)}: subscribing to ${probe} was refused`, fix: `the broker's ACL must allow ${config.prefix}/${nodeId}/# for this node (see provisioning/mosquitto)` };
    }
    const arrived = new Promise<void>((resolve) => client.on('message', (t) => { if (t === probe) resolve(); }));
    await client.publishAsync(probe, 'check', { qos: 1 });
    await Promise.race([arrived, timer('round trip timed out')]);
    return { ok: true, detail: `${redactUrl(config.url)} (MQTT ${config.protocolVersion}): connected as ${nodeId}, publish and subscribe allowed on ${config.prefix}/${nodeId}/#` };
  } catch (err) {
    return { ok: false, detail: `${redactUrl(config.url)}: publishing on ${config.prefix}/${nodeId}/ failed: ${(err as Error).message}`, fix: `the broker's ACL must allow ${config.prefix}/${nodeId}/# for this node (see provisioning/mosquitto)` };
  } finally {
    await client.endAsync().catch(() => {});
  }
}
