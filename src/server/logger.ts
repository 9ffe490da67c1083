// JSON logs. Redaction is a second line of defence: handlers never pass a key,
// blob or signature to the logger in the first place (threat 13).
import { pino, type Logger, type DestinationStream } from 'pino';

const REDACT_PATHS = [
  'blob', '*.blob', 'secret', '*.secret', 'privateKey', '*.privateKey',
  'signature', '*.signature', 'signatureInput', '*.signatureInput',
  'req.headers.signature', 'req.headers["signature-input"]', 'headers.signature', 'headers["signature-input"]',
  'passphrase', '*.passphrase',
];

export function makeLogger(level: string, dest?: DestinationStream): Logger {
  return pino({ level, base: { name: 'kmgrd' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, dest);
}
export type { Logger };
