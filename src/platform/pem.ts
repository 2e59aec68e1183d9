// PEM text: the certificates a chain file holds. Kept apart from x509.ts so that reading a
// chain does not load the X.509 library (ctl signs commands without it).
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificates in a text (a chain file: leaf first), each with its armour. */
export function pemCertificates(text: string): string[] {
  return text.match(PEM_CERT) ?? [];
}
