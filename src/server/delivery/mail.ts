// E-mail delivery: a minimal SMTP client for a configured relay, or the local
// sendmail. Plain SMTP to a relay the operator runs (on localhost, typically);
// the message says no more than the notice list does.
import { connect, type Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Notice } from '../../store/types.js';
import { MAIL_ADDRESS } from '../../protocol/messages.js';

export interface MailConfig {
  from: string;
  smtp?: { host: string; port: number };
  sendmail?: string;
}

/** Header values are ours, but the address is the owner's: refuse anything that could inject headers. */
const isMailAddress = (a: string): boolean => a.length <= 254 && MAIL_ADDRESS.test(a);

function composeMail(from: string, to: string, n: Notice, nowMs: number): string {
  const subject = `kmgr: ${n.kind.replace(/_/g, ' ')} (${n.partnerId})`;
  const body = `${n.message}\r\n\r\nNotice ${n.id}, ${new Date(n.at).toISOString()}.\r\nSee it with: kmgr notices\r\n`;
  return (
    `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: ${new Date(nowMs).toUTCString()}\r\n` +
    `Message-ID: <${randomBytes(12).toString('hex')}@${hostname()}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n` +
    // SMTP transparency: a line starting with a dot gets another.
    body.replace(/^\./gm, '..')
  );
}

function smtpSend(host: string, port: number, from: string, to: string, message: string, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(port, host);
    sock.setEncoding('utf8');
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error('SMTP timed out')));
    const steps: Array<[string | null, number]> = [
      [null, 220],
      [`EHLO ${hostname()}`, 250],
      [`MAIL FROM:<${from}>`, 250],
      [`RCPT TO:<${to}>`, 250],
      ['DATA', 354],
      [`${message}\r\n.`, 250],
      ['QUIT', 221],
    ];
    let buf = '';
    let step = 0;
    sock.on('data', (chunk: string) => {
      buf += chunk;
      // A reply is complete at a line "NNN text" (not "NNN-text", a continuation).
      const lines = buf.split('\r\n');
      const last = lines.slice(0, -1).reverse().find((l) => /^\d{3}[ ]/.test(l) || /^\d{3}$/.test(l));
      if (!last) return;
      buf = '';
      const code = Number(last.slice(0, 3));
      if (code !== steps[step]![1]) {
        sock.destroy();
        return reject(new Error(`SMTP refused: ${last}`));
      }
      step++;
      if (step >= steps.length) {
        sock.end();
        return resolve();
      }
      sock.write(`${steps[step]![0]}\r\n`);
    });
    sock.on('error', reject);
  });
}

function sendmailSend(path: string, message: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, ['-t', '-i'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`sendmail exited ${code}: ${err.trim().slice(0, 200)}`))));
    child.stdin.end(message.replace(/\r\n/g, '\n'));
  });
}

export async function sendMail(cfg: MailConfig, to: string, n: Notice, nowMs: number): Promise<void> {
  if (!isMailAddress(to)) throw new Error('the notify address is not a plain e-mail address');
  const message = composeMail(cfg.from, to, n, nowMs);
  if (cfg.smtp) return smtpSend(cfg.smtp.host, cfg.smtp.port, cfg.from, to, message);
  if (cfg.sendmail) return sendmailSend(cfg.sendmail, message);
  throw new Error('e-mail is not configured on this server (kmgrd serve --smtp or --sendmail)');
}
