/**
 * The cryptography of credentials at rest (docs/kv-api.md "Authentication", docs/s3.md
 * "Security"):
 *
 * - KV tokens are `kumo_<id>_<secret>`: the id names the record (`auth/token/<id>` in the
 *   metadata group) so it can be found without trying every hash; the secret is 32 random bytes
 *   and only its SHA-256 is stored. A fast hash is enough because the secret is high-entropy
 *   (no dictionary to try); a slow password hash would only cost CPU on every request.
 * - S3 secret access keys cannot be hashed (SigV4 signs with the secret itself), so they are
 *   sealed with AES-256-GCM under the cluster's secret key (--secret-key-file), with the access
 *   key id as additional data: a sealed secret copied into another key's record does not open.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";
import { readFileSync } from "node:fs";

/** Bytes of a token's random secret (256 bits). */
const TOKEN_SECRET_BYTES = 32;
/** Bytes of a token id (64 bits: unique among TOKENS_MAX records with overwhelming odds). */
const TOKEN_ID_BYTES = 8;
const TOKEN_RE = /^kumo_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface NewToken {
  readonly id: string;
  /** What the client presents: `kumo_<id>_<secret>` (shown once, never stored). */
  readonly token: string;
  /** SHA-256 of the secret, hex: what is stored. */
  readonly secretHash: string;
}

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

export function newToken(): NewToken {
  const id = randomBytes(TOKEN_ID_BYTES).toString("hex");
  const secret = randomBytes(TOKEN_SECRET_BYTES).toString("base64url");
  return { id, token: `kumo_${id}_${secret}`, secretHash: sha256Hex(secret) };
}

/** The id and secret of a bearer value shaped like a token; undefined for anything else. */
export function parseToken(bearer: string): { id: string; secret: string } | undefined {
  const m = TOKEN_RE.exec(bearer);
  return m ? { id: m[1] as string, secret: m[2] as string } : undefined;
}

/** Whether `secret` hashes to `secretHash` (compared in constant time). */
export function secretMatches(secret: string, secretHash: string): boolean {
  const want = Buffer.from(secretHash, "hex");
  const got = createHash("sha256").update(secret).digest();
  return want.byteLength === got.byteLength && timingSafeEqual(want, got);
}

/** Bytes of the cluster secret key (AES-256). */
export const SECRET_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Prefix of a sealed value (the version lets a later format coexist with this one). */
const SEALED_PREFIX = "aes256gcm:v1:";

/** Seals and opens S3 secrets under the cluster secret key. */
export class SecretBox {
  private readonly key: Buffer;

  constructor(key: Uint8Array) {
    if (key.byteLength !== SECRET_KEY_BYTES)
      throw new Error(`the secret key must be ${SECRET_KEY_BYTES} bytes, got ${key.byteLength}`);
    this.key = Buffer.from(key);
  }

  /** `aes256gcm:v1:<base64(iv | ciphertext | tag)>`, bound to `context` (the record's id). */
  seal(plaintext: string, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv("aes-256-gcm", this.key, iv);
    c.setAAD(Buffer.from(context));
    const body = Buffer.concat([c.update(plaintext, "utf8"), c.final()]);
    return SEALED_PREFIX + Buffer.concat([iv, body, c.getAuthTag()]).toString("base64");
  }

  /** The plaintext, or undefined when the value was sealed under another key or altered. */
  open(sealed: string, context: string): string | undefined {
    if (!sealed.startsWith(SEALED_PREFIX)) return undefined;
    const raw = Buffer.from(sealed.slice(SEALED_PREFIX.length), "base64");
    if (raw.byteLength < IV_BYTES + TAG_BYTES) return undefined;
    try {
      const d = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, IV_BYTES));
      d.setAAD(Buffer.from(context));
      d.setAuthTag(raw.subarray(raw.byteLength - TAG_BYTES));
      const body = raw.subarray(IV_BYTES, raw.byteLength - TAG_BYTES);
      return Buffer.concat([d.update(body), d.final()]).toString("utf8");
    } catch {
      return undefined;
    }
  }
}

/** A new secret key file's content: 32 random bytes, hex (what `kumo dev` writes). */
export function newSecretKeyText(): string {
  return `${randomBytes(SECRET_KEY_BYTES).toString("hex")}\n`;
}

/**
 * The cluster secret key from its file: 64 hex digits or 44 base64 characters (surrounding
 * whitespace ignored). Throws with a message naming the file (never its content).
 */
export function readSecretKeyFile(path: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (e) {
    throw new Error(`cannot read the secret key file ${path}: ${(e as Error).message}`);
  }
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  const b = Buffer.from(text, "base64");
  if (/^[A-Za-z0-9+/]{43}=$/.test(text) && b.byteLength === SECRET_KEY_BYTES) return b;
  throw new Error(
    `the secret key file ${path} must hold ${SECRET_KEY_BYTES} bytes as 64 hex digits or base64 (e.g. openssl rand -hex 32)`,
  );
}
