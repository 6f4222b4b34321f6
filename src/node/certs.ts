/**
 * Throwaway certificates for `kumo dev --tls` and for tests: a CA and node certificates signed by
 * it, made in-process (no `openssl` CLI needed). Keys come from node:crypto (native, fast); the
 * X.509 structures are built and signed with node-forge. Production clusters should use their
 * own PKI (docs/deploy.md, "TLS"); these certificates follow the same profile so that what
 * works in development works there too.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import forge from "node-forge";
import { assert } from "../base/index.js";

const DAY_MS = 86_400_000;
/** notBefore is back-dated so that a peer whose clock is a little behind accepts the cert. */
const BACKDATE_MS = 3_600_000;
const RSA_BITS = 2048;

export interface CertKeyPem {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface CaOptions {
  readonly commonName?: string;
  readonly validDays?: number;
}

export interface LeafOptions {
  /** Subject CN. For node certificates it is the node id (checked by peers, see transport). */
  readonly commonName: string;
  /** DNS names and IP addresses the certificate is valid for (subjectAltName). */
  readonly hosts?: readonly string[];
  readonly validDays?: number;
  /** Validity start (default: an hour ago). */
  readonly notBefore?: Date;
}

function newKeys(): { forgeKey: forge.pki.rsa.PrivateKey; keyPem: string } {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: RSA_BITS });
  const keyPem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  return { forgeKey: forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey, keyPem };
}

/** 16 random bytes, high bit clear (serials are positive DER integers). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f;
  return b.toString("hex");
}

function validity(
  cert: forge.pki.Certificate,
  notBefore: Date | undefined,
  validDays: number,
): void {
  assert(validDays > 0, "validDays must be positive");
  const from = notBefore ?? new Date(Date.now() - BACKDATE_MS);
  cert.validity.notBefore = from;
  cert.validity.notAfter = new Date(from.getTime() + BACKDATE_MS + validDays * DAY_MS);
}

/** A self-signed CA certificate and its key. */
export function makeCa(o: CaOptions = {}): CertKeyPem {
  const { forgeKey, keyPem } = newKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  cert.serialNumber = serial();
  validity(cert, undefined, o.validDays ?? 365);
  const subject = [{ name: "commonName", value: o.commonName ?? "Kumo dev CA" }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(forgeKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

/**
 * A certificate signed by `ca`, usable both as a TLS server (client ports, gRPC server) and as a
 * TLS client (gRPC towards peers): extendedKeyUsage serverAuth + clientAuth.
 */
export function makeLeaf(ca: CertKeyPem, o: LeafOptions): CertKeyPem {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const { forgeKey, keyPem } = newKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  cert.serialNumber = serial();
  validity(cert, o.notBefore, o.validDays ?? 365);
  cert.setSubject([{ name: "commonName", value: o.commonName }]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = (o.hosts ?? ["localhost", "127.0.0.1"]).map((h) =>
    isIP(h) ? { type: 7, ip: h } : { type: 2, value: h },
  );
  cert.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true, clientAuth: true },
    { name: "subjectAltName", altNames },
    { name: "subjectKeyIdentifier" },
    {
      name: "authorityKeyIdentifier",
      keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes(),
    },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

export interface NodeCertFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

/** Writes a certificate and key (key readable by the owner only) as DIR/NAME.crt, DIR/NAME.key. */
export function writeCertFiles(dir: string, name: string, c: CertKeyPem): NodeCertFiles {
  mkdirSync(dir, { recursive: true });
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  writeFileSync(keyFile, c.keyPem, { mode: 0o600 });
  writeFileSync(certFile, c.certPem);
  return { certFile, keyFile };
}
