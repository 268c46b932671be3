import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

/** An email as the SMTP server received it. */
export interface CapturedMail {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** The Message-ID header, with its angle brackets. */
  messageId: string;
}

/** Faults a test injects when a message arrives: answer 451 (try later) instead of accepting it. */
export interface SmtpHooks {
  /** Decides the answer to one message; runs before it is answered (and before `messages` holds it). */
  beforeAnswer?(mail: CapturedMail): 'accept' | 'reject' | Promise<'accept' | 'reject'>;
}

/** A real SMTP server on loopback that keeps every message it accepts. */
export interface TestSmtpServer {
  port: number;
  /** `smtp://127.0.0.1:PORT` for SMTP_URL. */
  url: string;
  /** Every message accepted, in order. */
  messages: CapturedMail[];
  /** Every message that arrived, accepted or refused by a hook. */
  attempts: CapturedMail[];
  /** The first message (already received, or arriving within `timeoutMs`) that matches. */
  waitFor(match: (mail: CapturedMail) => boolean, timeoutMs?: number): Promise<CapturedMail>;
  stop(): Promise<void>;
}

/** Starts an SMTP server (the `smtp-server` package) on 127.0.0.1; `port` 0 picks a free one. */
export async function startSmtpServer(port = 0, hooks: SmtpHooks = {}): Promise<TestSmtpServer> {
  const messages: CapturedMail[] = [];
  const attempts: CapturedMail[] = [];
  const waiters = new Set<() => void>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, _session, callback) {
      simpleParser(stream)
        .then(async (parsed) => {
          const to = Array.isArray(parsed.to) ? parsed.to.map((address) => address.text).join(', ') : (parsed.to?.text ?? '');
          const mail = { to, subject: parsed.subject ?? '', text: parsed.text ?? '', html: typeof parsed.html === 'string' ? parsed.html : '', messageId: parsed.messageId ?? '' };
          attempts.push(mail);
          if ((await hooks.beforeAnswer?.(mail)) === 'reject') {
            callback(Object.assign(new Error('Try again later'), { responseCode: 451 }));
            return;
          }
          messages.push(mail);
          for (const wake of waiters) wake();
          callback();
        })
        .catch(callback);
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  return {
    port: bound,
    url: `smtp://127.0.0.1:${bound}`,
    messages,
    attempts,
    waitFor(match, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find(match);
          if (!found) return;
          cleanup();
          resolve(found);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no matching email within ${timeoutMs} ms (received ${messages.length})`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A free loopback port nothing listens on (for an SMTP server that is "down" until started). */
export async function unusedPort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** The reset token in a password-reset email's link. */
export function resetTokenOf(mail: CapturedMail): string {
  const token = mail.text.match(/\/reset-password\?token=([A-Za-z0-9_-]+)/)?.[1];
  if (!token) throw new Error(`no reset link in: ${mail.text}`);
  return token;
}

/** The 6-digit code in a verification email. */
export function verificationCodeOf(mail: CapturedMail): string {
  const code = mail.text.match(/\b(\d{6})\b/)?.[1];
  if (!code) throw new Error(`no code in: ${mail.text}`);
  return code;
}
