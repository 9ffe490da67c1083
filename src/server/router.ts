// A small router: exact segments and {param} segments, no regular expressions per request.
import { KmgrError } from '../protocol/errors.js';
import { PARTNER_ID, PARTNER_NAME } from '../protocol/messages.js';
import type { Handler } from './context.js';
import { enrol, whoami } from './handlers/persons.js';
import { fetchKey, keyStatus, listKeys, registerKey } from './handlers/keys.js';
import { health, ready } from './handlers/health.js';
import { patchKey, rotateKey } from './handlers/terms.js';
import { ackNotices, history, notices } from './handlers/history.js';
import { verify } from './handlers/verify.js';
import { getCertificates, putCertificates } from './handlers/certificates.js';
import { getNotify, putNotify } from './handlers/notify.js';
import { addPartner, directory, listPartners, removePartner } from './handlers/partners.js';

interface Route {
  segments: string[];
  methods: Record<string, Handler>;
}

const PARAM_PATTERNS: Record<string, RegExp> = { partnerId: PARTNER_ID, partnerName: PARTNER_NAME };

const ROUTES: Route[] = [
  { segments: ['v1', 'health'], methods: { GET: health } },
  { segments: ['v1', 'ready'], methods: { GET: ready } },
  { segments: ['v1', 'persons'], methods: { POST: enrol } },
  { segments: ['v1', 'persons', 'me'], methods: { GET: whoami } },
  { segments: ['v1', 'keys'], methods: { GET: listKeys } },
  { segments: ['v1', 'keys', '{partnerId}'], methods: { GET: keyStatus, PUT: registerKey, PATCH: patchKey } },
  { segments: ['v1', 'keys', '{partnerId}', 'fetch'], methods: { POST: fetchKey } },
  { segments: ['v1', 'keys', '{partnerId}', 'rotate'], methods: { POST: rotateKey } },
  { segments: ['v1', 'keys', '{partnerId}', 'history'], methods: { GET: history } },
  { segments: ['v1', 'keys', '{partnerId}', 'certificates'], methods: { GET: getCertificates, PUT: putCertificates } },
  { segments: ['v1', 'notices'], methods: { GET: notices } },
  { segments: ['v1', 'notices', 'ack'], methods: { POST: ackNotices } },
  { segments: ['v1', 'verify'], methods: { POST: verify } },
  { segments: ['v1', 'notify'], methods: { GET: getNotify, PUT: putNotify } },
  { segments: ['v1', 'partners'], methods: { GET: listPartners, POST: addPartner } },
  { segments: ['v1', 'partners', '{partnerName}'], methods: { DELETE: removePartner } },
  { segments: ['v1', 'directory', '{partnerName}'], methods: { GET: directory } },
];

/** Every route as "METHOD /path/{param}", for the test that holds openapi.yaml to the router. */
export function routeList(): string[] {
  return ROUTES.flatMap((r) => Object.keys(r.methods).map((m) => `${m} /${r.segments.join('/')}`));
}

export function route(method: string, path: string): { handler: Handler; params: Record<string, string> } {
  const parts = path.split('/').slice(1);
  for (const r of ROUTES) {
    if (r.segments.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < parts.length && ok; i++) {
      const seg = r.segments[i]!;
      const got = parts[i]!;
      if (seg.startsWith('{')) {
        const name = seg.slice(1, -1);
        if (PARAM_PATTERNS[name]!.test(got)) params[name] = got;
        else ok = false;
      } else ok = seg === got;
    }
    if (!ok) continue;
    const handler = r.methods[method];
    if (!handler) throw new KmgrError('method_not_allowed', `${method} is not allowed on ${path}`, { allow: Object.keys(r.methods) });
    return { handler, params };
  }
  throw new KmgrError('not_found', `no such endpoint: ${path}`);
}
