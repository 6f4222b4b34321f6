/**
 * Decoder for `aws-chunked` request bodies (the x-amz-content-sha256 streaming modes).
 *
 * Wire format (each line ends in CRLF):
 *
 *     hex-size[;chunk-signature=<64 hex>]      data      ...
 *     0[;chunk-signature=<64 hex>]
 *     name:value                               (trailer modes only, any number)
 *     x-amz-trailer-signature:<64 hex>         (signed trailer mode only, last)
 *     (empty line)
 *
 * - STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]: every chunk, including the final empty one,
 *   carries `chunk-signature` = HMAC(signingKey, "AWS4-HMAC-SHA256-PAYLOAD\n" + amzDate + "\n" +
 *   scope + "\n" + previousSignature + "\n" + sha256("") + "\n" + sha256(data)), chained from
 *   the seed (the request's own signature). With -TRAILER, the trailer lines are signed by
 *   `x-amz-trailer-signature` = HMAC over "AWS4-HMAC-SHA256-TRAILER\n" + amzDate + "\n" + scope
 *   + "\n" + finalChunkSignature + "\n" + sha256("name:value\n" for each trailer line).
 * - STREAMING-UNSIGNED-PAYLOAD-TRAILER: plain chunk framing, no signatures; the trailer carries
 *   the flexible checksum (`x-amz-checksum-crc32:…`), which the caller compares.
 *
 * Streaming: in signed mode a chunk is held (as zero-copy views of the incoming buffers) only
 * until its signature is checked, so nothing unauthenticated ever reaches the consumer; in
 * unsigned mode data passes straight through. Memory is bounded by `chunkBytesMax` plus a small
 * line buffer.
 *
 * Tolerated SDK quirks: the JS SDK ends an unsigned body without a checksum as just "0\r\n"
 * (no final empty line), so EOF is accepted wherever only the final CRLF is missing. Anything
 * else malformed (bad hex, missing CRLF, oversized chunk or trailer, bad signature, bytes after
 * the end) destroys the stream with a ChunkedBodyError; an early EOF is IncompleteBody.
 *
 * Not done here: the checksum in the trailer is only parsed (see `trailers`); the caller checks
 * it against the bytes and checks that the trailer announced in `x-amz-trailer` arrived.
 */
import { createHash, createHmac, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { assert } from "../../base/index.js";
import {
  authErrorStatus,
  type ChunkSigningContext,
  EMPTY_SHA256,
  type PayloadMode,
  type S3AuthErrorCode,
  signaturesEqual,
} from "./sigv4.js";

export class ChunkedBodyError extends Error {
  override name = "ChunkedBodyError";

  constructor(
    readonly code: S3AuthErrorCode,
    message: string,
  ) {
    super(message);
  }

  /** The HTTP status for `code`. */
  get status(): number {
    return authErrorStatus(this.code);
  }
}

export interface AwsChunkedDecoderOptions {
  /** streaming-signed or streaming-unsigned-trailer. */
  mode: PayloadMode;
  /** x-amz-decoded-content-length, when the client sent it. */
  decodedLength?: number;
  /** Largest accepted chunk (default 16 MiB). */
  chunkBytesMax?: number;
  /** Largest accepted trailer section (default 16 KiB). */
  trailerBytesMax?: number;
}

const CHUNK_BYTES_MAX = 16 * 1024 * 1024;
const TRAILER_BYTES_MAX = 16 * 1024;
/** A chunk header is "hex;chunk-signature=<64>" (~90 bytes); allow generous extensions. */
const LINE_BYTES_MAX = 4096;
const CR = 0x0d;
const LF = 0x0a;
const TRAILER_SIGNATURE = "x-amz-trailer-signature";

type State =
  | "header" // reading a chunk-size line
  | "data" // inside a chunk's data
  | "data-crlf" // the CRLF after a chunk's data
  | "final-crlf" // after the 0-size chunk, no trailers expected: the closing CRLF
  | "trailer" // trailer lines until an empty line
  | "done";

export class AwsChunkedDecoder extends Transform {
  /** Trailing headers seen (lower-case names), available after 'end'. */
  readonly trailers = new Map<string, string>();

  private readonly signing: ChunkSigningContext | undefined;
  private readonly hasTrailer: boolean;
  private readonly decodedLength: number | undefined;
  private readonly badDecodedLength: boolean;
  private readonly chunkBytesMax: number;
  private readonly trailerBytesMax: number;

  private state: State = "header";
  /** The line being read (latin1, one char per byte), without its CRLF. */
  private line = "";
  /** Whether the current line's CR has been seen (the LF may come in the next buffer). */
  private lineCr = false;
  private crlfSeen = 0;
  private remaining = 0;
  private decoded = 0;
  /** Signed mode: the chain's previous signature, this chunk's claimed one, hash and data. */
  private previous = "";
  private claimed = "";
  private chunkHash: Hash | undefined;
  private held: Buffer[] = [];
  private trailerBytes = 0;
  /** Signed trailer: the canonical trailer text so far, and whether its signature checked. */
  private trailerCanonical = "";
  private trailerSigned = false;

  constructor(opts: AwsChunkedDecoderOptions) {
    super();
    const mode = opts.mode;
    assert(
      mode.kind === "streaming-signed" || mode.kind === "streaming-unsigned-trailer",
      () => `AwsChunkedDecoder needs a streaming payload mode, not ${mode.kind}`,
    );
    this.signing = mode.kind === "streaming-signed" ? mode.seed : undefined;
    this.hasTrailer = mode.kind === "streaming-unsigned-trailer" || mode.trailer;
    this.previous = this.signing?.seedSignature.toLowerCase() ?? "";
    // The declared length comes from a client header (Number("junk") is NaN): a bad one fails
    // the body like any other malformed input rather than being a programming error.
    const declared = opts.decodedLength;
    this.decodedLength = declared;
    this.badDecodedLength =
      declared !== undefined && !(Number.isSafeInteger(declared) && declared >= 0);
    this.chunkBytesMax = opts.chunkBytesMax ?? CHUNK_BYTES_MAX;
    this.trailerBytesMax = opts.trailerBytesMax ?? TRAILER_BYTES_MAX;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.finishAtEof();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  private checkDeclaredLength(): void {
    if (this.badDecodedLength)
      throw new ChunkedBodyError("InvalidRequest", "Invalid x-amz-decoded-content-length.");
  }

  private consume(buf: Buffer): void {
    this.checkDeclaredLength();
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case "header":
        case "trailer": {
          const end = this.readLine(buf, pos);
          if (end < 0) return;
          pos = end;
          const line = this.line;
          this.line = "";
          if (this.state === "header") this.onChunkHeader(line);
          else this.onTrailerLine(line);
          break;
        }
        case "data": {
          const n = Math.min(this.remaining, buf.length - pos);
          const piece = buf.subarray(pos, pos + n);
          pos += n;
          this.remaining -= n;
          if (this.signing) {
            this.chunkHash!.update(piece);
            this.held.push(piece);
          } else {
            this.push(piece);
          }
          if (this.remaining === 0) {
            if (this.signing) this.verifyChunk();
            this.state = "data-crlf";
            this.crlfSeen = 0;
          }
          break;
        }
        case "data-crlf":
        case "final-crlf": {
          const b = buf[pos++]!;
          if (b !== (this.crlfSeen === 0 ? CR : LF))
            throw new ChunkedBodyError(
              "InvalidRequest",
              "aws-chunked: expected CRLF after chunk data.",
            );
          if (++this.crlfSeen === 2) this.state = this.state === "data-crlf" ? "header" : "done";
          break;
        }
        case "done":
          throw new ChunkedBodyError(
            "InvalidRequest",
            "aws-chunked: data after the end of the body.",
          );
      }
    }
  }

  /**
   * Appends to the current line up to its CRLF. Returns the position after the LF, or -1 when
   * the line continues in the next buffer.
   */
  private readLine(buf: Buffer, pos: number): number {
    const max = this.state === "trailer" ? this.trailerBytesMax : LINE_BYTES_MAX;
    for (let i = pos; i < buf.length; i++) {
      const b = buf[i]!;
      if (this.lineCr) {
        if (b !== LF) throw new ChunkedBodyError("InvalidRequest", "aws-chunked: CR without LF.");
        this.lineCr = false;
        this.line += buf.toString("latin1", pos, Math.max(pos, i - 1));
        return i + 1;
      }
      if (b === CR) {
        this.lineCr = true;
      } else if (b === LF) {
        throw new ChunkedBodyError("InvalidRequest", "aws-chunked: line ends without CR.");
      }
      if (this.line.length + (i - pos) > max)
        throw new ChunkedBodyError("InvalidRequest", "aws-chunked: line too long.");
    }
    // The whole rest of the buffer belongs to the line (minus a pending CR).
    this.line += buf.toString("latin1", pos, this.lineCr ? buf.length - 1 : buf.length);
    return -1;
  }

  private onChunkHeader(line: string): void {
    const semi = line.indexOf(";");
    const sizeText = (semi < 0 ? line : line.slice(0, semi)).replace(/[ \t]+$/, "");
    if (!/^[0-9a-fA-F]{1,16}$/.test(sizeText))
      throw new ChunkedBodyError("InvalidRequest", "aws-chunked: invalid chunk size.");
    const size = Number.parseInt(sizeText, 16);
    if (size > this.chunkBytesMax)
      throw new ChunkedBodyError(
        "InvalidRequest",
        `aws-chunked: chunk of ${size} bytes exceeds the limit of ${this.chunkBytesMax}.`,
      );
    if (this.decodedLength !== undefined) {
      if (this.decoded + size > this.decodedLength)
        throw new ChunkedBodyError(
          "InvalidRequest",
          "aws-chunked: the body is longer than x-amz-decoded-content-length.",
        );
      if (size === 0 && this.decoded < this.decodedLength)
        throw new ChunkedBodyError(
          "IncompleteBody",
          "You did not provide the number of bytes specified by the x-amz-decoded-content-length header.",
        );
    }
    if (this.signing) {
      const ext = semi < 0 ? "" : line.slice(semi + 1).trim();
      const m = /^chunk-signature=([0-9a-fA-F]{64})$/.exec(ext);
      if (!m)
        throw new ChunkedBodyError(
          "SignatureDoesNotMatch",
          "aws-chunked: missing or malformed chunk-signature.",
        );
      this.claimed = m[1]!.toLowerCase();
      this.chunkHash = createHash("sha256");
    }
    this.decoded += size;
    if (size > 0) {
      this.remaining = size;
      this.state = "data";
      return;
    }
    // The final, empty chunk: it is signed too (over the empty data).
    if (this.signing) this.verifyChunk();
    if (this.hasTrailer) this.state = "trailer";
    else {
      this.state = "final-crlf";
      this.crlfSeen = 0;
    }
  }

  private verifyChunk(): void {
    const s = this.signing!;
    const stringToSign = [
      "AWS4-HMAC-SHA256-PAYLOAD",
      s.amzDate,
      s.scope,
      this.previous,
      EMPTY_SHA256,
      this.chunkHash!.digest("hex"),
    ].join("\n");
    const expected = createHmac("sha256", s.signingKey).update(stringToSign, "utf8").digest();
    if (!signaturesEqual(expected, this.claimed))
      throw new ChunkedBodyError(
        "SignatureDoesNotMatch",
        "The chunk signature we calculated does not match the signature you provided.",
      );
    this.previous = this.claimed;
    this.chunkHash = undefined;
    for (const piece of this.held) this.push(piece);
    this.held = [];
  }

  private onTrailerLine(line: string): void {
    if (line === "") {
      if (this.signing && !this.trailerSigned)
        throw new ChunkedBodyError(
          "SignatureDoesNotMatch",
          "aws-chunked: missing x-amz-trailer-signature.",
        );
      this.state = "done";
      return;
    }
    if (this.trailerSigned)
      throw new ChunkedBodyError(
        "InvalidRequest",
        "aws-chunked: trailer after x-amz-trailer-signature.",
      );
    this.trailerBytes += line.length + 2;
    if (this.trailerBytes > this.trailerBytesMax)
      throw new ChunkedBodyError("InvalidRequest", "aws-chunked: the trailer is too large.");
    const colon = line.indexOf(":");
    if (colon <= 0)
      throw new ChunkedBodyError("InvalidRequest", "aws-chunked: malformed trailer line.");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === TRAILER_SIGNATURE) {
      if (!this.signing)
        throw new ChunkedBodyError(
          "InvalidRequest",
          "aws-chunked: a trailer signature in an unsigned body.",
        );
      this.verifyTrailer(value);
      return;
    }
    if (this.trailers.has(name))
      throw new ChunkedBodyError("InvalidRequest", `aws-chunked: trailer ${name} appears twice.`);
    this.trailers.set(name, Buffer.from(value, "latin1").toString("utf8"));
    this.trailerCanonical += `${name}:${value}\n`;
  }

  private verifyTrailer(signature: string): void {
    const s = this.signing!;
    const canonical = this.trailerCanonical === "" ? "\n" : this.trailerCanonical;
    const stringToSign = [
      "AWS4-HMAC-SHA256-TRAILER",
      s.amzDate,
      s.scope,
      this.previous,
      createHash("sha256").update(canonical, "latin1").digest("hex"),
    ].join("\n");
    const expected = createHmac("sha256", s.signingKey).update(stringToSign, "utf8").digest();
    if (!signaturesEqual(expected, signature))
      throw new ChunkedBodyError(
        "SignatureDoesNotMatch",
        "The trailer signature we calculated does not match the signature you provided.",
      );
    this.trailerSigned = true;
  }

  private finishAtEof(): void {
    this.checkDeclaredLength();
    const incomplete = () =>
      new ChunkedBodyError("IncompleteBody", "The request body terminated unexpectedly.");
    switch (this.state) {
      case "header":
      case "data":
      case "data-crlf":
        throw incomplete();
      case "final-crlf":
        // "0\r\n" then EOF: the closing CRLF is missing, which some SDKs do; a lone CR is not.
        if (this.crlfSeen !== 0) throw incomplete();
        break;
      case "trailer":
        // EOF at a line boundary (the empty line is missing) is tolerated; half a line is not.
        if (this.line !== "" || this.lineCr) throw incomplete();
        if (this.signing && !this.trailerSigned) throw incomplete();
        break;
      case "done":
        break;
    }
    this.state = "done";
  }
}
