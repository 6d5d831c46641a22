// Maps, not object literals: a header named `constructor` or `__proto__` must not find Object.prototype members.
/** Compact forms (RFC 3261 §7.3.3 and later RFCs) → lower-cased long names. */
const COMPACT = new Map<string, string>(Object.entries({
  i: 'call-id',
  m: 'contact',
  e: 'content-encoding',
  l: 'content-length',
  c: 'content-type',
  f: 'from',
  s: 'subject',
  k: 'supported',
  t: 'to',
  v: 'via',
  o: 'event',
  r: 'refer-to',
  b: 'referred-by',
  u: 'allow-events',
  x: 'session-expires',
  a: 'accept-contact',
  j: 'reject-contact',
  d: 'request-disposition',
  y: 'identity',
}));

const CANONICAL = new Map<string, string>(Object.entries({
  'call-id': 'Call-ID',
  cseq: 'CSeq',
  'www-authenticate': 'WWW-Authenticate',
  'mime-version': 'MIME-Version',
  'rack': 'RAck',
  'rseq': 'RSeq',
}));

const keyCache = new Map<string, string>();

// The usual spellings, grouped by length: the parser calls headerKey with a fresh slice of the message for
// every header field, and comparing it with a few constants is cheaper than hashing it for a Map lookup.
const SPELLINGS: Array<Array<[string, string]>> = [];
for (const spelled of [
  'Via', 'From', 'To', 'Call-ID', 'Call-Id', 'CSeq', 'Contact', 'Max-Forwards', 'Content-Type', 'Content-Length',
  'Record-Route', 'Route', 'User-Agent', 'Server', 'Allow', 'Supported', 'Require', 'Proxy-Require', 'Unsupported',
  'Expires', 'Min-Expires', 'Subject', 'Date', 'Timestamp', 'Accept', 'Accept-Encoding', 'Accept-Language',
  'Authorization', 'WWW-Authenticate', 'Proxy-Authorization', 'Proxy-Authenticate', 'Authentication-Info',
  'Event', 'Allow-Events', 'Subscription-State', 'Session-Expires', 'Min-SE', 'Refer-To', 'Referred-By',
  'P-Asserted-Identity', 'P-Preferred-Identity', 'Privacy', 'Reason', 'RSeq', 'RAck', 'Path', 'Service-Route',
  'Content-Disposition', 'Content-Encoding', 'Content-Language', 'MIME-Version', 'Organization', 'Priority',
  'Warning', 'Retry-After', 'Alert-Info', 'Call-Info', 'Error-Info', 'In-Reply-To', 'Reply-To', 'Identity',
  'v', 'f', 't', 'i', 'm', 'l', 'c', 's', 'k', 'e', 'o', 'r', 'b', 'u', 'x',
]) {
  for (const name of new Set([spelled, spelled.toLowerCase()])) {
    const lower = name.toLowerCase();
    (SPELLINGS[name.length] ??= []).push([name, COMPACT.get(lower) ?? lower]);
  }
}

/** The key of a header name spelled in one of the usual ways (`Via`, `via`, `v`, `Call-ID`...), else undefined. */
export function knownHeaderKey(name: string): string | undefined {
  const candidates = SPELLINGS[name.length];
  if (candidates !== undefined) {
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!;
      if (c[0] === name) return c[1];
    }
  }
  return undefined;
}

/** The lower-cased long name of a header name as written (compact forms expanded). */
export function headerKey(name: string): string {
  const known = knownHeaderKey(name);
  if (known !== undefined) return known;
  let key = keyCache.get(name);
  if (key === undefined) {
    const lower = name.toLowerCase();
    key = COMPACT.get(lower) ?? lower;
    if (keyCache.size < 1024) keyCache.set(name, key);
  }
  return key;
}

/** The usual spelling of a header name (`call-id` → `Call-ID`, `record-route` → `Record-Route`). */
const canonicalCache = new Map<string, string>();

export function canonicalName(key: string): string {
  let known = CANONICAL.get(key) ?? canonicalCache.get(key);
  if (known !== undefined) return known;
  known = key.replace(/(^|-)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase());
  if (canonicalCache.size < 1024) canonicalCache.set(key, known);
  return known;
}

/** Headers whose value is a comma-separated list that may be split over several header fields. */
export const LIST_HEADERS = new Set([
  'via',
  'route',
  'record-route',
  'contact',
  'path',
  'service-route',
  'allow',
  'supported',
  'require',
  'proxy-require',
  'unsupported',
  'accept',
  'accept-encoding',
  'accept-language',
  'allow-events',
  'content-encoding',
  'in-reply-to',
]);

export const REASON_PHRASES: Record<number, string> = {
  100: 'Trying',
  180: 'Ringing',
  181: 'Call Is Being Forwarded',
  182: 'Queued',
  183: 'Session Progress',
  200: 'OK',
  202: 'Accepted',
  300: 'Multiple Choices',
  301: 'Moved Permanently',
  302: 'Moved Temporarily',
  305: 'Use Proxy',
  380: 'Alternative Service',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  410: 'Gone',
  413: 'Request Entity Too Large',
  414: 'Request-URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  420: 'Bad Extension',
  421: 'Extension Required',
  423: 'Interval Too Brief',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  484: 'Address Incomplete',
  485: 'Ambiguous',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  489: 'Bad Event',
  491: 'Request Pending',
  493: 'Undecipherable',
  500: 'Server Internal Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Server Time-out',
  505: 'Version Not Supported',
  513: 'Message Too Large',
  600: 'Busy Everywhere',
  603: 'Decline',
  604: 'Does Not Exist Anywhere',
  606: 'Not Acceptable',
};

export function reasonPhrase(status: number): string {
  return REASON_PHRASES[status] ?? (status < 200 ? 'Progress' : status < 300 ? 'OK' : 'Error');
}
