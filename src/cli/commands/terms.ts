// kmgr terms NAME ..., kmgr lock NAME, kmgr unlock NAME: change a key's use terms and its permit/inhibit flag (1508).
import { homePaths } from '../../client/home.js';
import { openForPartner } from '../session.js';
import { api } from '../../client/api.js';
import { UsageError } from '../../protocol/errors.js';
import type { KeyPatchRequest } from '../../protocol/messages.js';
import { printJson, print, warn } from '../output.js';
import { signedBinding } from '../../client/binding.js';
import { EXIT } from '../exit-codes.js';
import { parseDuration, parseExpiry } from '../parse.js';
import { printStatus, statusJson } from './status.js';
import { limitName, plural } from '../../protocol/words.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';

interface TermsOptions extends PassphraseSource {
  expires?: string;
  validFor?: string;
  maxUses?: number | 'none';
  maxPerDay?: number | 'none';
  maxPerWeek?: number | 'none';
  maxPerMonth?: number | 'none';
  onLimit?: 'deny' | 'notify';
  ssh?: 'on' | 'off';
}

function patchFrom(o: TermsOptions, now: number): KeyPatchRequest {
  if (o.expires !== undefined && o.validFor !== undefined) throw new UsageError('give --expires or --valid-for, not both');
  const patch: KeyPatchRequest = {};
  if (o.expires === 'never') patch.expiresAt = null;
  else if (o.expires !== undefined || o.validFor !== undefined) {
    const at = o.expires !== undefined ? parseExpiry(o.expires) : now + parseDuration('--valid-for', o.validFor!);
    if (at <= now) throw new UsageError('--expires is in the past');
    patch.expiresAt = new Date(at).toISOString();
  }
  for (const f of ['maxUses', 'maxPerDay', 'maxPerWeek', 'maxPerMonth'] as const) {
    const v = o[f];
    if (v !== undefined) patch[f] = v === 'none' ? null : v;
  }
  if (o.onLimit !== undefined) patch.onLimit = o.onLimit;
  if (o.ssh !== undefined) patch.ssh = o.ssh === 'on';
  if (Object.keys(patch).length === 0) throw new UsageError('nothing to change: give --expires, --valid-for, --max-uses, --max-per-day, --max-per-week, --max-per-month, --on-limit or --ssh');
  return patch;
}

async function apply(g: GlobalOptions, name: string, src: PassphraseSource, patch: KeyPatchRequest, done?: string): Promise<number> {
  const { session, partner } = await openForPartner(homePaths(g.home), name, src);
  if (patch.expiresAt !== undefined || patch.inhibited !== undefined) {
    // Verifiers judge the term and the lock by the owner's signed statement, so a change
    // to either needs a new one: a verifier that has seen it then takes a replay of the
    // older statement (saying "usable", or the old term) for what it is.
    // It is signed only over the public key this device registered itself: never over one the server supplies (threat 4).
    const cur = await api.status(session, partner.id);
    const known = partner.key;
    if (known?.publicKey && known.keyId === cur.keyId && known.version === cur.keyVersion) {
      patch.binding = await signedBinding(session, {
        partnerId: partner.id,
        keyId: cur.keyId,
        alg: cur.alg,
        publicKey: known.publicKey,
        keyVersion: cur.keyVersion,
        expiresAt: patch.expiresAt !== undefined ? patch.expiresAt : cur.expiresAt,
        locked: patch.inhibited ?? cur.inhibited,
      });
    } else if (cur.publicKey) {
      warn(`${name}: this device did not register the current key, so verifiers keep seeing the old statement (term and lock) until kmgr rotate ${name}`);
    }
  }
  const s = await api.patch(session, partner.id, patch);
  // A limit set below what is already used takes effect at once: say so, rather than let the next fetch surprise.
  const period = { total: 'in total', day: 'today', week: 'this week', month: 'this month' } as const;
  for (const k of ['total', 'day', 'week', 'month'] as const) {
    const max = s.limits[k];
    if (max !== null && s.uses[k] >= max && (patch.maxUses !== undefined || patch.maxPerDay !== undefined || patch.maxPerWeek !== undefined || patch.maxPerMonth !== undefined)) {
      warn(`${name}: its ${limitName(k)} limit of ${max} is already reached (${plural(s.uses[k], 'use')} ${period[k]}); ${s.onLimit === 'deny' ? 'further fetches are refused' : 'further fetches are served and recorded as overuse'}`);
    }
  }
  if (g.json) printJson(statusJson(name, s));
  else if (done) print(done);
  else printStatus(name, s);
  return EXIT.OK;
}

export function run(g: GlobalOptions, name: string, o: TermsOptions): Promise<number> {
  return apply(g, name, o, patchFrom(o, Date.now()));
}

export function lock(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  return apply(g, name, o, { inhibited: true }, `Locked ${name}: every use is refused until kmgr unlock ${name}.`);
}

export function unlock(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  return apply(g, name, o, { inhibited: false }, `Unlocked ${name}.`);
}
