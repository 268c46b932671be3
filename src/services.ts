import type { Config } from './config/config.js';
import { AuthService } from './modules/auth/auth.service.js';
import { PasswordHasher } from './modules/auth/password.js';
import { SessionService } from './modules/auth/session.service.js';
import { AccessTokens } from './modules/auth/tokens.js';
import { UserService } from './modules/users/user.service.js';

/** The application's services: created once per app, stateless, given an EntityManager per call. */
export interface Services {
  auth: AuthService;
  users: UserService;
}

/** Wires the services from configuration. */
export async function createServices(config: Config): Promise<Services> {
  const passwords = await PasswordHasher.create(config.bcryptCost);
  const users = new UserService(passwords);
  const sessions = new SessionService();
  const accessTokens = new AccessTokens(config.jwtSecret, config.appUrl);
  return { users, auth: new AuthService(users, sessions, passwords, accessTokens) };
}
