// Runs in the hashing pool's worker threads (piscina; see BcryptPool in bcrypt-pool.ts). bcrypt is
// pure CPU work: done synchronously here, it blocks only this worker, never the server's event loop.
// Plain JavaScript because worker threads load files directly, without the TypeScript build.
import bcrypt from 'bcryptjs';

/** @param {{ value: string, cost: number }} task */
export function hash({ value, cost }) {
  return bcrypt.hashSync(value, cost);
}

/** @param {{ value: string, hash: string }} task — a hash bcryptjs cannot parse is a mismatch. */
export function compare({ value, hash }) {
  try {
    return bcrypt.compareSync(value, hash);
  } catch {
    return false;
  }
}
