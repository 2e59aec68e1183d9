// X.509 certificates and CRLs through @peculiar/x509 (no ASN.1 by hand). The library resolves
// its services through tsyringe, which needs a Reflect metadata polyfill loaded first; and it
// signs and verifies through WebCrypto, which Node provides. Loaded only where certificates are
// read (signed commands, the fleet CA in the demo): the agent without a fleet never pays for it.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
