// Asking before something that cannot be undone (retire a key, trust a new
// certificate): at a terminal the user answers y; a script passes --yes, and
// without a terminal or --yes the command is refused rather than assumed.
import { closeSync, openSync } from 'node:fs';
import { KmgrError, UsageError } from '../protocol/errors.js';

export async function confirm(question: string, what: string, yes: boolean | undefined): Promise<void> {
  if (yes) return;
  try {
    closeSync(openSync('/dev/tty', 'r+'));
  } catch {
    throw new UsageError(`${what} needs confirmation: answer at a terminal, or pass --yes`);
  }
  const { promptTty } = await import('../client/passphrase.js');
  const answer = (await promptTty(`${question} [y/N] `, what, true)).trim().toLowerCase();
  if (answer !== 'y' && answer !== 'yes') throw new KmgrError('cancelled', `${what} cancelled (answered ${JSON.stringify(answer || 'no')})`);
}
