/**
 * S3 errors: the codes the S3 door answers with, each with its HTTP status and AWS's default
 * message, and the `<Error>` XML document S3 clients parse.
 *
 * Every SDK maps an S3 failure by its `<Code>`, not by its status or message, so the codes here
 * are spelled exactly as AWS spells them, and the status goes with the code (a client that sees
 * `NoSuchKey` with anything but 404, or `NotModified` with a body, misbehaves). The helpers of
 * the door (range and condition evaluation, XML parsing, checksum checks) report failures as an
 * `S3Error`; the handler turns one into a response with `err.status`, `err.headers` and
 * `errorXml` (except when `err.hasBody` is false: 304 carries no body, and HEAD never does).
 *
 * `escapeXml` lives here rather than in xml.ts so that this module depends on nothing.
 */

interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

/** AWS's code → status and default message (from the S3 API reference's error code list). */
const ERRORS = {
  AccessDenied: { status: 403, message: "Access Denied" },
  AccessForbidden: { status: 403, message: "CORSResponse: This CORS request is not allowed." },
  AccountProblem: {
    status: 403,
    message:
      "There is a problem with your account that prevents the operation from completing successfully.",
  },
  AuthorizationHeaderMalformed: { status: 400, message: "The authorization header is malformed." },
  AuthorizationQueryParametersError: {
    status: 400,
    message:
      "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
  },
  BadDigest: {
    status: 400,
    message: "The Content-MD5 you specified did not match what we received.",
  },
  BucketAlreadyExists: {
    status: 409,
    message:
      "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
  },
  BucketAlreadyOwnedByYou: {
    status: 409,
    message: "Your previous request to create the named bucket succeeded and you already own it.",
  },
  BucketNotEmpty: { status: 409, message: "The bucket you tried to delete is not empty" },
  ConditionalRequestConflict: {
    status: 409,
    message:
      "A conflicting operation occurred. If using PutObject you can retry the request. If using multipart upload you should initiate another CreateMultipartUpload request and re-upload each part.",
  },
  EntityTooLarge: {
    status: 400,
    message: "Your proposed upload exceeds the maximum allowed object size.",
  },
  EntityTooSmall: {
    status: 400,
    message: "Your proposed upload is smaller than the minimum allowed object size.",
  },
  ExpiredToken: { status: 400, message: "The provided token has expired." },
  IllegalLocationConstraintException: {
    status: 400,
    message:
      "The specified location-constraint is not valid for the region this request was sent to.",
  },
  IllegalVersioningConfigurationException: {
    status: 400,
    message: "The Versioning element must be specified",
  },
  IncompleteBody: {
    status: 400,
    message: "You did not provide the number of bytes specified by the Content-Length HTTP header.",
  },
  InternalError: { status: 500, message: "We encountered an internal error. Please try again." },
  InvalidAccessKeyId: {
    status: 403,
    message: "The AWS Access Key Id you provided does not exist in our records.",
  },
  InvalidArgument: { status: 400, message: "Invalid Argument" },
  InvalidBucketName: { status: 400, message: "The specified bucket is not valid." },
  InvalidBucketState: {
    status: 409,
    message: "The request is not valid with the current state of the bucket.",
  },
  InvalidDigest: { status: 400, message: "The Content-MD5 you specified is not valid." },
  InvalidLocationConstraint: {
    status: 400,
    message: "The specified location constraint is not valid.",
  },
  InvalidObjectState: {
    status: 403,
    message: "The operation is not valid for the object's storage class",
  },
  InvalidPartNumber: { status: 416, message: "The requested partnumber is not satisfiable" },
  InvalidPart: {
    status: 400,
    message:
      "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
  },
  InvalidPartOrder: {
    status: 400,
    message:
      "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
  },
  InvalidRange: { status: 416, message: "The requested range is not satisfiable" },
  InvalidRequest: { status: 400, message: "Invalid Request" },
  InvalidStorageClass: { status: 400, message: "The storage class you specified is not valid" },
  InvalidURI: { status: 400, message: "Couldn't parse the specified URI." },
  InvalidToken: { status: 400, message: "The provided token is malformed or otherwise invalid." },
  KeyTooLongError: { status: 400, message: "Your key is too long" },
  MalformedXML: {
    status: 400,
    message:
      "The XML you provided was not well-formed or did not validate against our published schema",
  },
  MetadataTooLarge: {
    status: 400,
    message: "Your metadata headers exceed the maximum allowed metadata size.",
  },
  MethodNotAllowed: {
    status: 405,
    message: "The specified method is not allowed against this resource.",
  },
  MissingContentLength: {
    status: 411,
    message: "You must provide the Content-Length HTTP header.",
  },
  MissingRequestBodyError: { status: 400, message: "Request Body is empty" },
  MissingSecurityHeader: { status: 400, message: "Your request is missing a required header." },
  NoSuchBucket: { status: 404, message: "The specified bucket does not exist" },
  NoSuchBucketPolicy: { status: 404, message: "The bucket policy does not exist" },
  NoSuchCORSConfiguration: { status: 404, message: "The CORS configuration does not exist" },
  NoSuchKey: { status: 404, message: "The specified key does not exist." },
  NoSuchLifecycleConfiguration: {
    status: 404,
    message: "The lifecycle configuration does not exist",
  },
  NoSuchTagSet: { status: 404, message: "The TagSet does not exist" },
  NoSuchUpload: {
    status: 404,
    message:
      "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
  },
  NoSuchVersion: {
    status: 404,
    message: "The specified version does not exist.",
  },
  NotImplemented: {
    status: 501,
    message: "A header you provided implies functionality that is not implemented",
  },
  NotModified: { status: 304, message: "Not Modified" },
  OperationAborted: {
    status: 409,
    message:
      "A conflicting conditional operation is currently in progress against this resource. Please try again.",
  },
  PreconditionFailed: {
    status: 412,
    message: "At least one of the pre-conditions you specified did not hold",
  },
  RequestTimeTooSkewed: {
    status: 403,
    message: "The difference between the request time and the current time is too large.",
  },
  RequestTimeout: {
    status: 400,
    message:
      "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.",
  },
  ServiceUnavailable: { status: 503, message: "Please reduce your request rate." },
  SignatureDoesNotMatch: {
    status: 403,
    message:
      "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
  },
  SlowDown: { status: 503, message: "Please reduce your request rate." },
  TooManyBuckets: {
    status: 400,
    message: "You have attempted to create more buckets than allowed",
  },
  UnexpectedContent: {
    status: 400,
    message: "This request does not support content",
  },
  XAmzContentSHA256Mismatch: {
    status: 400,
    message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
  },
} as const satisfies Record<string, ErrorSpec>;

export type S3ErrorCode = keyof typeof ERRORS;

/** Whether `code` is one of the codes above (e.g. to map an error read from a peer). */
export function isS3ErrorCode(code: string): code is S3ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

/** The HTTP status AWS answers `code` with. */
export function statusOf(code: S3ErrorCode): number {
  return ERRORS[code].status;
}

export interface S3ErrorOptions {
  /** Overrides the code's usual status (rarely right: clients key on the code). */
  readonly status?: number;
  /** The `<Resource>` to report instead of the one passed to `errorXml`. */
  readonly resource?: string;
  /** More child elements of `<Error>`, in order (e.g. `Key`, `BucketName`, `ArgumentName`). */
  readonly extra?: Record<string, string>;
  /** Response headers that go with the error (e.g. `Content-Range` for 416, `Allow` for 405). */
  readonly headers?: Record<string, string>;
}

/** A failure the S3 door reports to the client as `<Error><Code>…`. */
export class S3Error extends Error {
  override readonly name = "S3Error";
  readonly code: S3ErrorCode;
  readonly status: number;
  readonly resource: string | undefined;
  readonly extra: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: S3ErrorCode, message?: string, opts?: S3ErrorOptions) {
    super(message ?? ERRORS[code].message);
    this.code = code;
    this.status = opts?.status ?? ERRORS[code].status;
    this.resource = opts?.resource;
    this.extra = opts?.extra ?? {};
    this.headers = opts?.headers ?? {};
  }

  /** False for 304 (and 1xx/204): such a response must not carry the XML document. */
  get hasBody(): boolean {
    return this.status !== 304 && this.status !== 204 && this.status >= 200;
  }
}

/** Any thrown value as an S3Error: S3Errors pass through, anything else is an InternalError. */
export function toS3Error(e: unknown): S3Error {
  return e instanceof S3Error ? e : new S3Error("InternalError");
}

// Characters XML 1.0 cannot carry literally: C0 controls other than TAB/LF/CR, and U+FFFE/U+FFFF;
// CR and LF, and NEL and LINE SEPARATOR (line ends in XML 1.1), which parsers may normalize.
// Lone surrogates cannot be encoded in UTF-8 at all.
const ESCAPE_RE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these control characters are the point
  /[&<>"'\r\n\u0085\u2028\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udfff]/gu;

function escapeChar(c: string): string {
  switch (c) {
    case "&":
      return "&amp;";
    case "<":
      return "&lt;";
    case ">":
      return "&gt;";
    case '"':
      return "&quot;";
    case "'":
      return "&apos;";
    default: {
      const cp = c.codePointAt(0) ?? 0xfffd;
      // With the `u` flag a surrogate pair is one match (never reaching here); a lone one is
      // not a character at all and becomes U+FFFD, as any UTF-8 encoder would make it.
      if (cp >= 0xd800 && cp <= 0xdfff) return "\ufffd";
      return `&#x${cp.toString(16).toUpperCase()};`;
    }
  }
}

/**
 * Escapes text for an XML element or attribute value. Beyond the five markup characters, CR and
 * LF (and U+0085, U+2028, line ends to XML 1.1) become character references, as AWS's XML
 * key-name guidance asks and the AWS SDKs do (a literal CR would be normalized to LF by any XML
 * parser, so a key with CR would not round-trip), and the C0 controls
 * XML 1.0 does not allow become `&#xN;` references too. Strictly those are not well-formed
 * XML 1.0 either (that is why S3 has `encoding-type=url`), but like AWS we emit them rather than
 * lose the character; the S3 door's own parser reads them back.
 */
export function escapeXml(s: string): string {
  return s.replace(ESCAPE_RE, escapeChar);
}

const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';
const XML_NAME_RE = /^[A-Za-z_][A-Za-z0-9._-]*$/;

/**
 * The `<Error>` document: Code, Message, Resource, RequestId, then the error's extra elements.
 * `resource` is the request path (e.g. `/bucket/key`), unless the error names its own.
 */
export function errorXml(err: S3Error, requestId: string, resource: string): string {
  let xml = `${XML_DECLARATION}<Error><Code>${err.code}</Code><Message>${escapeXml(err.message)}</Message>`;
  xml += `<Resource>${escapeXml(err.resource ?? resource)}</Resource>`;
  xml += `<RequestId>${escapeXml(requestId)}</RequestId>`;
  for (const [name, value] of Object.entries(err.extra)) {
    if (!XML_NAME_RE.test(name)) continue;
    xml += `<${name}>${escapeXml(value)}</${name}>`;
  }
  return `${xml}</Error>`;
}
