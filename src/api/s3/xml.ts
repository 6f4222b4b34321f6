/**
 * The XML of the S3 door: rendering response documents and parsing request bodies.
 *
 * Rendering: each `*Xml` function takes a plain typed object and returns the document, with the
 * XML declaration and the S3 namespace, elements in AWS's order. Text goes through `escapeXml`
 * (markup characters, CR/LF, and `&#xN;` for the C0 controls XML 1.0 cannot carry), then
 * fast-xml-parser's `XMLBuilder` (preserveOrder, entity processing off: the text is escaped
 * already) assembles it, so Version and DeleteMarker entries stay interleaved in list order.
 * Timestamps are given as ISO strings (used as they are) or epoch milliseconds (formatted as
 * `2006-02-03T16:45:09.000Z`); ETags are sent quoted (`&quot;…&quot;`) whether given quoted or
 * not; checksum maps may be keyed `crc32` or `CRC32`.
 *
 * `encoding-type=url` is the caller's: listing renderers print what they are given and only add
 * the EncodingType element. S3 encodes (with `encodeS3Url`) exactly these elements — ListObjects
 * V1: Delimiter, Marker, Prefix, NextMarker, Key (and CommonPrefixes' Prefix); V2: Delimiter,
 * Prefix, Key, StartAfter (and CommonPrefixes); ListObjectVersions and ListMultipartUploads:
 * Delimiter, KeyMarker, Prefix, NextKeyMarker, Key (and CommonPrefixes).
 *
 * Parsing: request bodies are untrusted, so every parser
 * - bounds the body (1 MiB; 4 MiB for CompleteMultipartUpload, whose 10 000 parts with
 *   checksums take ~1.7 MB) and wants valid UTF-8;
 * - refuses any DOCTYPE (so no external entity can be fetched and no entity can expand: XXE and
 *   billion laughs are impossible), with fast-xml-parser's own entity processing off; the five
 *   predefined entities and character references are decoded here, anything else is an error;
 * - checks well-formedness (`XMLValidator`) and a single root of the expected name;
 * - keeps text exactly (no trimming, no number or boolean coercion: a key `0123` or `  a ` or
 *   `true` stays what it was); line ends are normalized as XML requires (CR LF and CR → LF),
 *   which is why CR in a key must be sent as `&#13;`, as AWS documents;
 * - reports every problem as S3Error MalformedXML, except where S3 has a more specific code.
 * Unknown child elements are ignored, as S3 does for forward compatibility.
 */
import { XMLBuilder, XMLParser, XMLValidator } from "fast-xml-parser";
import type { ChecksumAlgorithm } from "./checksums.js";
import { CHECKSUM_ALGORITHMS } from "./checksums.js";
import { escapeXml, S3Error } from "./errors.js";
import { isoDate, quoteETag } from "./http-headers.js";

export { escapeXml } from "./errors.js";

export const S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/";
const DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';

// ---------------------------------------------------------------------------------------------
// Rendering

/** A node in fast-xml-parser's preserveOrder form: `{ Tag: [children] }` or `{ "#text": s }`. */
type XNode = Record<string, unknown>;
type Child = XNode | undefined | readonly Child[];

function flatten(children: readonly Child[], out: XNode[]): XNode[] {
  for (const c of children) {
    if (c === undefined) continue;
    if (Array.isArray(c)) flatten(c as readonly Child[], out);
    else out.push(c as XNode);
  }
  return out;
}

/** An element with child elements (undefined children are skipped, arrays spliced in). */
function el(name: string, ...children: Child[]): XNode {
  return { [name]: flatten(children, []) };
}

/** A text-only element; undefined → no element at all. */
function leaf(name: string, value: string | number | boolean | undefined): XNode | undefined {
  if (value === undefined) return undefined;
  const s = String(value);
  return { [name]: s === "" ? [] : [{ "#text": escapeXml(s) }] };
}

const builder = new XMLBuilder({
  preserveOrder: true,
  processEntities: false,
  suppressEmptyNode: false,
  ignoreAttributes: false,
  format: false,
});

/** The document: declaration, then `root` with the S3 namespace (and more attributes). */
function render(name: string, children: Child[], attrs: Record<string, string> = {}): string {
  const root: XNode = { [name]: flatten(children, []), ":@": { "@_xmlns": S3_XMLNS, ...attrs } };
  return DECLARATION + (builder.build([root]) as string);
}

/** ISO 8601 text used as it is, or epoch milliseconds. */
export type Timestamp = string | number;

function time(t: Timestamp): string {
  return typeof t === "number" ? isoDate(t) : t;
}

export interface Owner {
  readonly id: string;
  readonly displayName?: string | undefined;
}

function ownerNode(tag: "Owner" | "Initiator", o: Owner | undefined): XNode | undefined {
  return o && el(tag, leaf("ID", o.id), leaf("DisplayName", o.displayName));
}

/** Checksums by algorithm, keyed `crc32` (as in x-amz-checksum-crc32) or `CRC32`. */
export type ChecksumMap = Readonly<Record<string, string>>;

/** ChecksumCRC32 … ChecksumSHA256 elements for the checksums present. */
function checksumNodes(sums: ChecksumMap | undefined): (XNode | undefined)[] {
  return CHECKSUM_ALGORITHMS.map((a) => leaf(`Checksum${a}`, sums?.[a] ?? sums?.[a.toLowerCase()]));
}

function algorithmNodes(algos: readonly string[] | string | undefined): (XNode | undefined)[] {
  const list = typeof algos === "string" ? [algos] : (algos ?? []);
  return list.map((a) => leaf("ChecksumAlgorithm", a.toUpperCase()));
}

function maybe<T>(v: T | undefined, f: (v: T) => string): string | undefined {
  return v === undefined ? undefined : f(v);
}

// ListBuckets

export interface BucketEntry {
  readonly name: string;
  readonly creationDate: Timestamp;
  readonly region?: string | undefined;
}

export interface ListAllMyBucketsInput {
  readonly owner: Owner;
  readonly buckets: readonly BucketEntry[];
  readonly continuationToken?: string | undefined;
  readonly prefix?: string | undefined;
}

export function listAllMyBucketsXml(r: ListAllMyBucketsInput): string {
  return render("ListAllMyBucketsResult", [
    ownerNode("Owner", r.owner),
    el(
      "Buckets",
      r.buckets.map((b) =>
        el(
          "Bucket",
          leaf("Name", b.name),
          leaf("CreationDate", time(b.creationDate)),
          leaf("BucketRegion", b.region),
        ),
      ),
    ),
    leaf("ContinuationToken", r.continuationToken),
    leaf("Prefix", r.prefix),
  ]);
}

/**
 * GetBucketLocation. S3 answers an empty element for us-east-1 (and buckets created without a
 * constraint), so undefined, "" and "us-east-1" all render empty.
 */
export function locationConstraintXml(region: string | undefined): string {
  const v = region === undefined || region === "us-east-1" ? "" : region;
  return render("LocationConstraint", v === "" ? [] : [{ "#text": escapeXml(v) }]);
}

// ListObjects (V1 and V2)

export interface ObjectEntry {
  readonly key: string;
  readonly lastModified: Timestamp;
  /** Quoted or not; sent quoted. */
  readonly etag: string;
  readonly size: number;
  /** STANDARD when absent. */
  readonly storageClass?: string | undefined;
  /** Only when the request asks for it (fetch-owner=true in V2; always in V1). */
  readonly owner?: Owner | undefined;
  /** The algorithms of the object's checksums (any case; sent upper case). */
  readonly checksumAlgorithm?: readonly string[] | undefined;
  /** COMPOSITE | FULL_OBJECT. */
  readonly checksumType?: string | undefined;
}

interface ListCommon {
  /** The bucket. */
  readonly name: string;
  readonly prefix?: string | undefined;
  readonly delimiter?: string | undefined;
  readonly maxKeys: number;
  readonly isTruncated: boolean;
  /** "url" when the request had encoding-type=url (the caller encodes the values). */
  readonly encodingType?: string | undefined;
  readonly contents: readonly ObjectEntry[];
  readonly commonPrefixes: readonly string[];
}

export interface ListObjectsV2Input extends ListCommon {
  readonly continuationToken?: string | undefined;
  readonly nextContinuationToken?: string | undefined;
  readonly startAfter?: string | undefined;
  /** Defaults to contents + common prefixes. */
  readonly keyCount?: number | undefined;
}

export interface ListObjectsV1Input extends ListCommon {
  /** Always rendered ("" when absent). */
  readonly marker?: string | undefined;
  /** S3 sends it only when truncated and a delimiter was given; rendered whenever set. */
  readonly nextMarker?: string | undefined;
}

function contentsNodes(contents: readonly ObjectEntry[]): XNode[] {
  return contents.map((o) =>
    el(
      "Contents",
      leaf("Key", o.key),
      leaf("LastModified", time(o.lastModified)),
      leaf("ETag", quoteETag(o.etag)),
      algorithmNodes(o.checksumAlgorithm),
      leaf("ChecksumType", o.checksumType),
      leaf("Size", o.size),
      ownerNode("Owner", o.owner),
      leaf("StorageClass", o.storageClass ?? "STANDARD"),
    ),
  );
}

function prefixNodes(prefixes: readonly string[]): XNode[] {
  return prefixes.map((p) => el("CommonPrefixes", leaf("Prefix", p)));
}

/** ListObjectsV2's ListBucketResult. */
export function listBucketResultV2Xml(r: ListObjectsV2Input): string {
  return render("ListBucketResult", [
    leaf("Name", r.name),
    leaf("Prefix", r.prefix ?? ""),
    leaf("ContinuationToken", r.continuationToken),
    leaf("NextContinuationToken", r.nextContinuationToken),
    leaf("StartAfter", r.startAfter),
    leaf("KeyCount", r.keyCount ?? r.contents.length + r.commonPrefixes.length),
    leaf("MaxKeys", r.maxKeys),
    leaf("Delimiter", r.delimiter),
    leaf("EncodingType", r.encodingType),
    leaf("IsTruncated", r.isTruncated),
    contentsNodes(r.contents),
    prefixNodes(r.commonPrefixes),
  ]);
}

/** ListObjects' (V1) ListBucketResult. */
export function listBucketResultV1Xml(r: ListObjectsV1Input): string {
  return render("ListBucketResult", [
    leaf("Name", r.name),
    leaf("Prefix", r.prefix ?? ""),
    leaf("Marker", r.marker ?? ""),
    leaf("NextMarker", r.nextMarker),
    leaf("MaxKeys", r.maxKeys),
    leaf("Delimiter", r.delimiter),
    leaf("EncodingType", r.encodingType),
    leaf("IsTruncated", r.isTruncated),
    contentsNodes(r.contents),
    prefixNodes(r.commonPrefixes),
  ]);
}

// ListObjectVersions

export interface VersionEntry {
  /** A delete marker: rendered as DeleteMarker (no ETag, Size, StorageClass). */
  readonly deleteMarker?: boolean | undefined;
  readonly key: string;
  /** "null" for the null version. */
  readonly versionId: string;
  readonly isLatest: boolean;
  readonly lastModified: Timestamp;
  readonly etag?: string | undefined;
  readonly size?: number | undefined;
  readonly owner?: Owner | undefined;
  readonly storageClass?: string | undefined;
  readonly checksumAlgorithm?: readonly string[] | undefined;
  readonly checksumType?: string | undefined;
}

export interface ListVersionsInput {
  /** The bucket. */
  readonly name: string;
  readonly prefix?: string | undefined;
  readonly delimiter?: string | undefined;
  readonly keyMarker?: string | undefined;
  readonly versionIdMarker?: string | undefined;
  readonly nextKeyMarker?: string | undefined;
  readonly nextVersionIdMarker?: string | undefined;
  readonly maxKeys: number;
  readonly isTruncated: boolean;
  readonly encodingType?: string | undefined;
  /** Versions and delete markers in list order (by key, then newest first): kept interleaved. */
  readonly versions: readonly VersionEntry[];
  readonly commonPrefixes: readonly string[];
}

export function listVersionsResultXml(r: ListVersionsInput): string {
  return render("ListVersionsResult", [
    leaf("Name", r.name),
    leaf("Prefix", r.prefix ?? ""),
    leaf("KeyMarker", r.keyMarker ?? ""),
    leaf("VersionIdMarker", r.versionIdMarker ?? ""),
    leaf("NextKeyMarker", r.nextKeyMarker),
    leaf("NextVersionIdMarker", r.nextVersionIdMarker),
    leaf("MaxKeys", r.maxKeys),
    leaf("Delimiter", r.delimiter),
    leaf("EncodingType", r.encodingType),
    leaf("IsTruncated", r.isTruncated),
    r.versions.map((v) =>
      v.deleteMarker
        ? el(
            "DeleteMarker",
            leaf("Key", v.key),
            leaf("VersionId", v.versionId),
            leaf("IsLatest", v.isLatest),
            leaf("LastModified", time(v.lastModified)),
            ownerNode("Owner", v.owner),
          )
        : el(
            "Version",
            leaf("Key", v.key),
            leaf("VersionId", v.versionId),
            leaf("IsLatest", v.isLatest),
            leaf("LastModified", time(v.lastModified)),
            leaf("ETag", quoteETag(v.etag ?? "")),
            algorithmNodes(v.checksumAlgorithm),
            leaf("ChecksumType", v.checksumType),
            leaf("Size", v.size ?? 0),
            ownerNode("Owner", v.owner),
            leaf("StorageClass", v.storageClass ?? "STANDARD"),
          ),
    ),
    prefixNodes(r.commonPrefixes),
  ]);
}

// Multipart uploads

export function initiateMultipartUploadResultXml(r: {
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
}): string {
  return render("InitiateMultipartUploadResult", [
    leaf("Bucket", r.bucket),
    leaf("Key", r.key),
    leaf("UploadId", r.uploadId),
  ]);
}

export function completeMultipartUploadResultXml(r: {
  /** The object's URL (AWS: `https://bucket.s3.region.amazonaws.com/key`, key URL-encoded). */
  readonly location: string;
  readonly bucket: string;
  readonly key: string;
  /** `hex-N`, quoted or not. */
  readonly etag: string;
  readonly checksums?: ChecksumMap | undefined;
  readonly checksumType?: string | undefined;
}): string {
  return render("CompleteMultipartUploadResult", [
    leaf("Location", r.location),
    leaf("Bucket", r.bucket),
    leaf("Key", r.key),
    leaf("ETag", quoteETag(r.etag)),
    checksumNodes(r.checksums),
    leaf("ChecksumType", r.checksumType),
  ]);
}

export interface UploadEntry {
  readonly key: string;
  readonly uploadId: string;
  readonly initiated: Timestamp;
  readonly owner: Owner;
  /** Defaults to the owner. */
  readonly initiator?: Owner | undefined;
  readonly storageClass?: string | undefined;
  readonly checksumAlgorithm?: string | undefined;
  readonly checksumType?: string | undefined;
}

export interface ListMultipartUploadsInput {
  readonly bucket: string;
  readonly prefix?: string | undefined;
  readonly delimiter?: string | undefined;
  readonly keyMarker?: string | undefined;
  readonly uploadIdMarker?: string | undefined;
  readonly nextKeyMarker?: string | undefined;
  readonly nextUploadIdMarker?: string | undefined;
  readonly maxUploads: number;
  readonly isTruncated: boolean;
  readonly encodingType?: string | undefined;
  readonly uploads: readonly UploadEntry[];
  readonly commonPrefixes: readonly string[];
}

export function listMultipartUploadsResultXml(r: ListMultipartUploadsInput): string {
  return render("ListMultipartUploadsResult", [
    leaf("Bucket", r.bucket),
    leaf("KeyMarker", r.keyMarker ?? ""),
    leaf("UploadIdMarker", r.uploadIdMarker ?? ""),
    leaf("NextKeyMarker", r.nextKeyMarker),
    leaf("NextUploadIdMarker", r.nextUploadIdMarker),
    leaf("Delimiter", r.delimiter),
    leaf("Prefix", r.prefix ?? ""),
    leaf("MaxUploads", r.maxUploads),
    leaf("EncodingType", r.encodingType),
    leaf("IsTruncated", r.isTruncated),
    r.uploads.map((u) =>
      el(
        "Upload",
        leaf("Key", u.key),
        leaf("UploadId", u.uploadId),
        ownerNode("Initiator", u.initiator ?? u.owner),
        ownerNode("Owner", u.owner),
        leaf("StorageClass", u.storageClass ?? "STANDARD"),
        leaf("Initiated", time(u.initiated)),
        algorithmNodes(u.checksumAlgorithm),
        leaf("ChecksumType", u.checksumType),
      ),
    ),
    prefixNodes(r.commonPrefixes),
  ]);
}

export interface PartEntry {
  readonly partNumber: number;
  readonly lastModified: Timestamp;
  readonly etag: string;
  readonly size: number;
  readonly checksums?: ChecksumMap | undefined;
}

export interface ListPartsInput {
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
  readonly partNumberMarker?: number | undefined;
  readonly nextPartNumberMarker?: number | undefined;
  readonly maxParts: number;
  readonly isTruncated: boolean;
  readonly parts: readonly PartEntry[];
  readonly owner: Owner;
  /** Defaults to the owner. */
  readonly initiator?: Owner | undefined;
  readonly storageClass?: string | undefined;
  readonly checksumAlgorithm?: string | undefined;
  readonly checksumType?: string | undefined;
}

export function listPartsResultXml(r: ListPartsInput): string {
  return render("ListPartsResult", [
    leaf("Bucket", r.bucket),
    leaf("Key", r.key),
    leaf("UploadId", r.uploadId),
    leaf("PartNumberMarker", r.partNumberMarker ?? 0),
    leaf("NextPartNumberMarker", r.nextPartNumberMarker),
    leaf("MaxParts", r.maxParts),
    leaf("IsTruncated", r.isTruncated),
    r.parts.map((p) =>
      el(
        "Part",
        leaf("PartNumber", p.partNumber),
        leaf("LastModified", time(p.lastModified)),
        leaf("ETag", quoteETag(p.etag)),
        leaf("Size", p.size),
        checksumNodes(p.checksums),
      ),
    ),
    ownerNode("Initiator", r.initiator ?? r.owner),
    ownerNode("Owner", r.owner),
    leaf("StorageClass", r.storageClass ?? "STANDARD"),
    algorithmNodes(r.checksumAlgorithm),
    leaf("ChecksumType", r.checksumType),
  ]);
}

// Copy

export interface CopyResultInput {
  readonly lastModified: Timestamp;
  readonly etag: string;
  readonly checksums?: ChecksumMap | undefined;
  readonly checksumType?: string | undefined;
}

export function copyObjectResultXml(r: CopyResultInput): string {
  return render("CopyObjectResult", [
    leaf("LastModified", time(r.lastModified)),
    leaf("ETag", quoteETag(r.etag)),
    leaf("ChecksumType", r.checksumType),
    checksumNodes(r.checksums),
  ]);
}

export function copyPartResultXml(r: CopyResultInput): string {
  return render("CopyPartResult", [
    leaf("LastModified", time(r.lastModified)),
    leaf("ETag", quoteETag(r.etag)),
    checksumNodes(r.checksums),
  ]);
}

// DeleteObjects

export interface DeletedEntry {
  readonly key: string;
  readonly versionId?: string | undefined;
  /** True when a delete marker was created or deleted. */
  readonly deleteMarker?: boolean | undefined;
  readonly deleteMarkerVersionId?: string | undefined;
}

export interface DeleteErrorEntry {
  readonly key: string;
  readonly versionId?: string | undefined;
  readonly code: string;
  readonly message: string;
}

/** DeleteObjects' answer; in Quiet mode pass no `deleted` (S3 then lists only errors). */
export function deleteResultXml(r: {
  readonly deleted: readonly DeletedEntry[];
  readonly errors: readonly DeleteErrorEntry[];
}): string {
  return render("DeleteResult", [
    r.deleted.map((d) =>
      el(
        "Deleted",
        leaf("Key", d.key),
        leaf("VersionId", d.versionId),
        leaf("DeleteMarker", d.deleteMarker),
        leaf("DeleteMarkerVersionId", d.deleteMarkerVersionId),
      ),
    ),
    r.errors.map((e) =>
      el(
        "Error",
        leaf("Key", e.key),
        leaf("VersionId", e.versionId),
        leaf("Code", e.code),
        leaf("Message", e.message),
      ),
    ),
  ]);
}

// Bucket configuration

export type VersioningStatus = "Enabled" | "Suspended";

/** GetBucketVersioning: no Status element on a bucket whose versioning was never set. */
export function versioningConfigurationXml(status: VersioningStatus | undefined): string {
  return render("VersioningConfiguration", [leaf("Status", status)]);
}

const XSI = "http://www.w3.org/2001/XMLSchema-instance";
const ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers";

/**
 * GetBucketAcl / GetObjectAcl for the two canned ACLs Kumo has: the owner's FULL_CONTROL, and
 * with `publicRead` READ for AllUsers.
 */
export function aclXml(r: {
  readonly ownerId: string;
  readonly ownerDisplayName?: string | undefined;
  readonly publicRead: boolean;
}): string {
  const grantee = (type: "CanonicalUser" | "Group", ...children: Child[]): XNode => ({
    Grantee: flatten(children, []),
    ":@": { "@_xmlns:xsi": XSI, "@_xsi:type": type },
  });
  const owner: Owner = { id: r.ownerId, displayName: r.ownerDisplayName ?? r.ownerId };
  return render("AccessControlPolicy", [
    ownerNode("Owner", owner),
    el(
      "AccessControlList",
      el(
        "Grant",
        grantee("CanonicalUser", leaf("ID", owner.id), leaf("DisplayName", owner.displayName)),
        leaf("Permission", "FULL_CONTROL"),
      ),
      r.publicRead
        ? el("Grant", grantee("Group", leaf("URI", ALL_USERS)), leaf("Permission", "READ"))
        : undefined,
    ),
  ]);
}

export type CorsMethod = "GET" | "PUT" | "POST" | "DELETE" | "HEAD";
const CORS_METHODS: readonly string[] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/** A CORS rule as parsed here (methods checked). */
export interface CorsRule {
  readonly id?: string | undefined;
  readonly allowedOrigins: readonly string[];
  readonly allowedMethods: readonly CorsMethod[];
  readonly allowedHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds?: number | undefined;
}

/** A CORS rule as stored (what rendering and matching need). */
export interface CorsRuleLike {
  readonly id?: string | undefined;
  readonly allowedOrigins: readonly string[];
  readonly allowedMethods: readonly string[];
  readonly allowedHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds?: number | undefined;
}

/** GetBucketCors (NoSuchCORSConfiguration is the handler's when there are no rules). */
export function corsConfigurationXml(rules: readonly CorsRuleLike[]): string {
  return render(
    "CORSConfiguration",
    rules.map((r) =>
      el(
        "CORSRule",
        leaf("ID", r.id),
        r.allowedHeaders.map((h) => leaf("AllowedHeader", h)),
        r.allowedMethods.map((m) => leaf("AllowedMethod", m)),
        r.allowedOrigins.map((o) => leaf("AllowedOrigin", o)),
        r.exposeHeaders.map((h) => leaf("ExposeHeader", h)),
        leaf("MaxAgeSeconds", r.maxAgeSeconds),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** Bound on a request body's XML (bytes). */
export const MAX_XML_BODY_BYTES = 1 << 20;
/** CompleteMultipartUpload's bound: 10 000 parts with SHA-256 checksums take ~1.7 MB. */
export const MAX_COMPLETE_MULTIPART_BODY_BYTES = 4 << 20;
/** S3's limit on keys in one DeleteObjects. */
export const MAX_DELETE_OBJECTS = 1000;
/** S3's limit on CORS rules. */
export const MAX_CORS_RULES = 100;

/** A parsed element: its child elements, and its text (decoded, CDATA included, comments not). */
interface XElement {
  readonly name: string;
  readonly children: XElement[];
  readonly text: string;
}

const malformed = (why?: string): S3Error =>
  new S3Error(
    "MalformedXML",
    why === undefined
      ? undefined
      : `The XML you provided was not well-formed or did not validate against our published schema (${why})`,
  );

const parser = new XMLParser({
  preserveOrder: true,
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: false,
  htmlEntities: false,
  ignoreAttributes: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  removeNSPrefix: true,
  cdataPropName: "#cdata",
});

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const ENTITY_RE = /&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,8})|#x([0-9a-fA-F]{1,8}));/y;
const NAMED: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

/** Decodes the predefined entities and character references; any other `&` is an error. */
function decodeEntities(raw: string): string {
  if (!raw.includes("&")) return raw;
  let out = "";
  let i = 0;
  for (;;) {
    const amp = raw.indexOf("&", i);
    if (amp < 0) return out + raw.slice(i);
    out += raw.slice(i, amp);
    ENTITY_RE.lastIndex = amp;
    const m = ENTITY_RE.exec(raw);
    if (!m) throw malformed("undefined entity or bare '&'");
    if (m[1] !== undefined) {
      out += NAMED[m[1]];
    } else {
      const cp = m[2] !== undefined ? Number.parseInt(m[2], 10) : Number.parseInt(m[3] ?? "", 16);
      // Any code point but NUL and surrogates: the C0 controls are XML 1.1's "restricted
      // characters", which escapeXml emits as references and which keys may contain.
      if (!(cp > 0 && cp <= 0x10ffff) || (cp >= 0xd800 && cp <= 0xdfff)) {
        throw malformed("invalid character reference");
      }
      out += String.fromCodePoint(cp);
    }
    i = amp + m[0].length;
  }
}

function isBlank(s: string): boolean {
  return /^[ \t\n]*$/.test(s);
}

/** Converts fast-xml-parser's preserveOrder nodes into XElements. */
function convert(nodes: unknown, name: string): XElement {
  const children: XElement[] = [];
  let text = "";
  if (!Array.isArray(nodes)) throw malformed();
  for (const node of nodes as unknown[]) {
    if (node === null || typeof node !== "object") throw malformed();
    for (const [k, v] of Object.entries(node)) {
      if (k === ":@") continue;
      if (k === "#text") {
        text += decodeEntities(String(v));
      } else if (k === "#cdata") {
        // [{ "#text": raw }]: CDATA is taken literally.
        for (const c of Array.isArray(v) ? (v as unknown[]) : []) {
          const t = (c as Record<string, unknown>)["#text"];
          if (t !== undefined) text += String(t);
        }
      } else if (k.startsWith("?") || k.startsWith("!")) {
        // processing instructions, comments: no content
      } else {
        children.push(convert(v, k));
      }
    }
  }
  return { name, children, text };
}

/**
 * Parses a body into its root element, checking size, encoding, DOCTYPE, well-formedness and
 * the root's name. `undefined` for an empty (or all-whitespace) body.
 */
function parseBody(
  body: Uint8Array | string,
  rootName: string,
  maxBytes: number,
): XElement | undefined {
  const size = typeof body === "string" ? Buffer.byteLength(body) : body.length;
  if (size > maxBytes) throw malformed(`body larger than ${maxBytes} bytes`);
  let text: string;
  if (typeof body === "string") {
    text = body;
  } else {
    try {
      text = UTF8.decode(body);
    } catch {
      throw malformed("not UTF-8");
    }
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (isBlank(text.replace(/\r/g, ""))) return undefined;
  // No DTD at all: nothing to expand, nothing external to fetch.
  if (/<!DOCTYPE|<!ENTITY|<!ATTLIST|<!ELEMENT/i.test(text)) throw malformed("DOCTYPE not allowed");
  // XML 2.11: CR LF and lone CR are read as LF.
  text = text.replace(/\r\n?/g, "\n");
  let root: XElement | undefined;
  try {
    if (XMLValidator.validate(text) !== true) throw malformed();
    const top = convert(parser.parse(text), "");
    if (top.children.length !== 1 || !isBlank(top.text)) throw malformed("one root element");
    root = top.children[0];
  } catch (e) {
    throw e instanceof S3Error ? e : malformed();
  }
  if (root?.name !== rootName) throw malformed(`the root element must be ${rootName}`);
  return root;
}

/** The element's children named `name` (element-only content: stray text is an error). */
function all(e: XElement, name: string): XElement[] {
  if (!isBlank(e.text)) throw malformed(`text in ${e.name}`);
  return e.children.filter((c) => c.name === name);
}

/** The one child `name`'s exact text; undefined if absent; error if repeated or not a leaf. */
function optionalText(e: XElement, name: string): string | undefined {
  const found = all(e, name);
  if (found.length === 0) return undefined;
  const c = found[0]!;
  if (found.length > 1) throw malformed(`more than one ${name}`);
  if (c.children.length > 0) throw malformed(`${name} must be text`);
  return c.text;
}

function requiredText(e: XElement, name: string): string {
  const v = optionalText(e, name);
  if (v === undefined) throw malformed(`${e.name} without ${name}`);
  return v;
}

/** Element values that are tokens (numbers, enums, ETags) may be surrounded by whitespace. */
function token(s: string): string {
  return s.trim();
}

// CompleteMultipartUpload

export interface CompletedPart {
  readonly partNumber: number;
  /** The ETag as sent, without quotes (`W/` and `"` removed). */
  readonly etag: string;
  /** Checksum elements sent, keyed by algorithm (`CRC32`, …), trimmed. */
  readonly checksums: Partial<Record<ChecksumAlgorithm, string>>;
}

/**
 * CompleteMultipartUpload's body: at least one Part, each with PartNumber (1..10000, else
 * InvalidArgument) and ETag, optionally checksums; part numbers strictly ascending, else
 * InvalidPartOrder (which also bounds the list to 10 000 parts).
 */
export function parseCompleteMultipartUpload(
  body: Uint8Array | string,
  maxBytes = MAX_COMPLETE_MULTIPART_BODY_BYTES,
): { readonly parts: CompletedPart[] } {
  const root = parseBody(body, "CompleteMultipartUpload", maxBytes);
  if (!root) throw malformed("empty body");
  const parts: CompletedPart[] = [];
  for (const p of all(root, "Part")) {
    const n = token(requiredText(p, "PartNumber"));
    if (!/^\d{1,9}$/.test(n)) throw malformed("PartNumber must be an integer");
    const partNumber = Number(n);
    if (partNumber < 1 || partNumber > 10_000) {
      throw new S3Error(
        "InvalidArgument",
        "Part number must be an integer between 1 and 10000, inclusive",
        { extra: { ArgumentName: "partNumber", ArgumentValue: n } },
      );
    }
    const prev = parts[parts.length - 1];
    if (prev !== undefined && partNumber <= prev.partNumber) throw new S3Error("InvalidPartOrder");
    let etag = token(requiredText(p, "ETag"));
    if (etag.startsWith("W/")) etag = etag.slice(2);
    etag = etag.replace(/^"|"$/g, "");
    const checksums: Partial<Record<ChecksumAlgorithm, string>> = {};
    for (const a of CHECKSUM_ALGORITHMS) {
      const v = optionalText(p, `Checksum${a}`);
      if (v !== undefined) checksums[a] = token(v);
    }
    parts.push({ partNumber, etag, checksums });
  }
  if (parts.length === 0) throw malformed("no Part");
  return { parts };
}

// DeleteObjects

export interface ObjectToDelete {
  /** Exactly as sent (not trimmed; may be "", which S3 reports per key). */
  readonly key: string;
  readonly versionId?: string;
  /** Conditional delete (If-Match per object), unquoted. */
  readonly etag?: string;
}

/** DeleteObjects' body: 1..1000 Object entries with a Key, and Quiet (default false). */
export function parseDelete(
  body: Uint8Array | string,
  maxBytes = MAX_XML_BODY_BYTES,
): { readonly objects: ObjectToDelete[]; readonly quiet: boolean } {
  const root = parseBody(body, "Delete", maxBytes);
  if (!root) throw malformed("empty body");
  const entries = all(root, "Object");
  if (entries.length === 0) throw malformed("no Object");
  if (entries.length > MAX_DELETE_OBJECTS) {
    throw malformed(`more than ${MAX_DELETE_OBJECTS} objects`);
  }
  const objects = entries.map((o): ObjectToDelete => {
    const key = requiredText(o, "Key");
    const versionId = maybe(optionalText(o, "VersionId"), token);
    const etag = maybe(optionalText(o, "ETag"), (s) =>
      token(s).replace(/^W\//, "").replace(/^"|"$/g, ""),
    );
    return {
      key,
      ...(versionId ? { versionId } : {}),
      ...(etag ? { etag } : {}),
    };
  });
  const q = optionalText(root, "Quiet");
  let quiet = false;
  if (q !== undefined) {
    const t = token(q).toLowerCase();
    if (t !== "true" && t !== "false") throw malformed("Quiet must be true or false");
    quiet = t === "true";
  }
  return { objects, quiet };
}

// CreateBucket

/** CreateBucket's optional body; an empty body means no configuration. */
export function parseCreateBucketConfiguration(
  body: Uint8Array | string,
  maxBytes = MAX_XML_BODY_BYTES,
): { readonly locationConstraint?: string } {
  const root = parseBody(body, "CreateBucketConfiguration", maxBytes);
  if (!root) return {};
  const lc = maybe(optionalText(root, "LocationConstraint"), token);
  return lc ? { locationConstraint: lc } : {};
}

// PutBucketVersioning

/**
 * PutBucketVersioning's body → the new status. Without Status:
 * IllegalVersioningConfigurationException (as S3); a Status or MfaDelete other than the
 * allowed values: MalformedXML (schema violation); MfaDelete Enabled: NotImplemented (it needs
 * MFA devices, which Kumo does not have).
 */
export function parseVersioningConfiguration(
  body: Uint8Array | string,
  maxBytes = MAX_XML_BODY_BYTES,
): VersioningStatus {
  const root = parseBody(body, "VersioningConfiguration", maxBytes);
  if (!root) throw malformed("empty body");
  const s = optionalText(root, "Status");
  const m = maybe(optionalText(root, "MfaDelete"), token);
  if (m !== undefined && m !== "Enabled" && m !== "Disabled") throw malformed("MfaDelete");
  if (m === "Enabled") throw new S3Error("NotImplemented", "MFA Delete is not supported.");
  if (s === undefined) throw new S3Error("IllegalVersioningConfigurationException");
  const status = token(s);
  if (status !== "Enabled" && status !== "Suspended") throw malformed("Status");
  return status;
}

// CORS

function checkOneWildcard(kind: "AllowedOrigin" | "AllowedHeader", v: string): void {
  if (v.indexOf("*") !== v.lastIndexOf("*")) {
    throw new S3Error("InvalidRequest", `${kind} "${v}" can not have more than one wildcard.`);
  }
}

/**
 * PutBucketCors' body: 1..100 CORSRule, each with AllowedOrigin+ and AllowedMethod+ (GET, PUT,
 * POST, DELETE, HEAD; another method is InvalidRequest, as in S3), AllowedHeader*,
 * ExposeHeader*, MaxAgeSeconds? and ID? (≤ 255 characters). Origins and headers may hold one `*`.
 */
export function parseCorsConfiguration(
  body: Uint8Array | string,
  maxBytes = MAX_XML_BODY_BYTES,
): CorsRule[] {
  const root = parseBody(body, "CORSConfiguration", maxBytes);
  if (!root) throw malformed("empty body");
  const rules = all(root, "CORSRule");
  if (rules.length === 0) throw malformed("no CORSRule");
  if (rules.length > MAX_CORS_RULES) throw malformed(`more than ${MAX_CORS_RULES} CORSRule`);
  return rules.map((r): CorsRule => {
    const texts = (name: string): string[] =>
      all(r, name).map((c) => {
        if (c.children.length > 0) throw malformed(`${name} must be text`);
        return token(c.text);
      });
    const allowedOrigins = texts("AllowedOrigin");
    const methods = texts("AllowedMethod");
    if (allowedOrigins.length === 0 || methods.length === 0) {
      throw malformed("CORSRule needs AllowedOrigin and AllowedMethod");
    }
    for (const m of methods) {
      if (!CORS_METHODS.includes(m)) {
        throw new S3Error(
          "InvalidRequest",
          `Found unsupported HTTP method in CORS config. Unsupported method is ${m}`,
        );
      }
    }
    const allowedHeaders = texts("AllowedHeader");
    for (const o of allowedOrigins) checkOneWildcard("AllowedOrigin", o);
    for (const h of allowedHeaders) checkOneWildcard("AllowedHeader", h);
    const id = optionalText(r, "ID");
    if (id !== undefined && id.length > 255) throw malformed("ID longer than 255 characters");
    const age = maybe(optionalText(r, "MaxAgeSeconds"), token);
    if (age !== undefined && !/^\d{1,10}$/.test(age)) throw malformed("MaxAgeSeconds");
    return {
      ...(id !== undefined ? { id } : {}),
      allowedOrigins,
      allowedMethods: methods as CorsMethod[],
      allowedHeaders,
      exposeHeaders: texts("ExposeHeader"),
      ...(age !== undefined ? { maxAgeSeconds: Number(age) } : {}),
    };
  });
}

/** Glob match with `*` for any run of characters. */
function wildcardMatch(pattern: string, s: string): boolean {
  const parts = pattern.split("*");
  if (parts.length === 1) return pattern === s;
  const first = parts[0] ?? "";
  const last = parts[parts.length - 1] ?? "";
  if (s.length < first.length + last.length || !s.startsWith(first) || !s.endsWith(last)) {
    return false;
  }
  let pos = first.length;
  const end = s.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const p = parts[i] ?? "";
    const at = s.indexOf(p, pos);
    if (at < 0 || at + p.length > end) return false;
    pos = at + p.length;
  }
  return true;
}

/**
 * The first rule that allows a request from `origin` with `method` (for a preflight, the
 * Access-Control-Request-Method) and every one of `requestHeaders` (the preflight's
 * Access-Control-Request-Headers; empty for a simple request): origins match with `*`
 * wildcards (`http://*.example.com`), case-sensitively; methods exactly; headers
 * case-insensitively, with wildcards. Undefined when none does (S3 then answers a preflight
 * with 403 AccessForbidden and a simple request without CORS headers).
 */
export function corsMatch<R extends CorsRuleLike>(
  rules: readonly R[],
  origin: string,
  method: string,
  requestHeaders: readonly string[],
): R | undefined {
  const headers = requestHeaders.map((h) => h.trim().toLowerCase()).filter((h) => h !== "");
  return rules.find(
    (r) =>
      r.allowedOrigins.some((o) => wildcardMatch(o, origin)) &&
      r.allowedMethods.some((m) => m === method) &&
      headers.every((h) => r.allowedHeaders.some((a) => wildcardMatch(a.toLowerCase(), h))),
  );
}

/**
 * The CORS response headers S3 sends for a matched rule: Allow-Origin `*` when the rule allows
 * any origin (without credentials), else the origin echoed with Allow-Credentials; on a
 * preflight, Allow-Methods (the rule's), Allow-Headers (the requested ones) and Max-Age; on
 * other requests, Expose-Headers. Always `Vary: Origin, Access-Control-Request-Headers,
 * Access-Control-Request-Method`.
 */
export function corsResponseHeaders(
  rule: CorsRuleLike,
  origin: string,
  preflight: { readonly requestHeaders: readonly string[] } | undefined,
): Record<string, string> {
  const anyOrigin = rule.allowedOrigins.includes("*");
  const out: Record<string, string> = {
    "access-control-allow-origin": anyOrigin ? "*" : origin,
    vary: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
  };
  if (!anyOrigin) out["access-control-allow-credentials"] = "true";
  if (preflight) {
    out["access-control-allow-methods"] = rule.allowedMethods.join(", ");
    const hs = preflight.requestHeaders.map((h) => h.trim().toLowerCase()).filter((h) => h !== "");
    if (hs.length > 0) out["access-control-allow-headers"] = hs.join(", ");
    if (rule.maxAgeSeconds !== undefined) {
      out["access-control-max-age"] = String(rule.maxAgeSeconds);
    }
  } else if (rule.exposeHeaders.length > 0) {
    out["access-control-expose-headers"] = rule.exposeHeaders.join(", ");
  }
  return out;
}
