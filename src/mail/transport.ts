import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js';
import type { Config } from '../config/config.js';
import type { Logger } from '../logger.js';
import type { RenderedMail } from './templates.js';

/** An email ready to go. */
export interface OutgoingMail extends RenderedMail {
  id: string;
  to: string;
}

/** Delivers one email or throws; one per app. */
export interface MailTransport {
  /**
   * Sends `mail`. Once `signal` aborts, the attempt is given up (an SMTP connection in the middle of
   * it is closed) and this rejects with `signal.reason`: whether the server got the message is then
   * unknown, so a repeat carries the same Message-ID.
   */
  send(mail: OutgoingMail, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/** SMTP timeouts: a stuck server must not hold a worker for minutes (nodemailer's defaults). */
const SMTP_TIMEOUTS = { connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000 };

/**
 * `SMTP_URL` set: nodemailer's SMTP transport (pooled connections). Unset: every email is written as
 * an `.eml` file to `DATA_DIR/outbox` and, outside production, logged in full, so whoever tries the
 * server sees the reset link or code at once. In production without SMTP nothing of the content is
 * logged.
 */
export function createMailTransport(config: Pick<Config, 'smtpUrl' | 'mailFrom' | 'dataDir' | 'isProduction'>, logger: Logger): MailTransport {
  // Every attempt at one email carries the same Message-ID (its outbox row), so a repeat is recognised.
  const message = (mail: OutgoingMail) => ({ from: config.mailFrom, to: mail.to, subject: mail.subject, text: mail.text, html: mail.html, messageId: `<${mail.id}@${hostOf(config.mailFrom)}>` });
  if (config.smtpUrl) {
    const options: SMTPPool.Options = { url: config.smtpUrl, pool: true, ...SMTP_TIMEOUTS };
    const transporter = nodemailer.createTransport(options);
    return {
      async send(mail, signal) {
        try {
          await transporter.sendMail({ ...message(mail), signal });
        } catch (error) {
          // nodemailer's own AbortError says only "aborted": the caller's reason says why.
          throw signal?.aborted ? signal.reason : error;
        }
      },
      close: () => transporter.close(),
    };
  }
  const outbox = join(config.dataDir, 'outbox');
  const writer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    // Writing a file takes no time worth cutting short: the signal is not needed.
    async send(mail) {
      const info = await writer.sendMail(message(mail));
      await mkdir(outbox, { recursive: true, mode: 0o700 });
      const file = join(outbox, `${new Date().toISOString().replace(/[:.]/g, '-')}-${mail.id}.eml`);
      await writeFile(file, info.message as Buffer, { mode: 0o600 });
      if (config.isProduction) {
        logger.warn({ mailId: mail.id, file }, 'SMTP_URL is not set: email written to the outbox folder, not sent');
      } else {
        logger.info({ mailId: mail.id, to: mail.to, subject: mail.subject, file }, `email (not sent, SMTP_URL is not set):\n${mail.text}`);
      }
    },
    close: () => writer.close(),
  };
}

function hostOf(address: string): string {
  return address.match(/@([^>\s]+)/)?.[1] ?? 'localhost';
}
