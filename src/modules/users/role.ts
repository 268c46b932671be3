import { registerEnumType } from 'type-graphql';

/** What an account may do. Read from the database on every request, never from a token. */
export enum Role {
  USER = 'USER',
  ADMIN = 'ADMIN',
}

registerEnumType(Role, {
  name: 'Role',
  description: 'What an account may do.',
  valuesConfig: {
    USER: { description: 'A regular account: manages only itself.' },
    ADMIN: { description: 'Manages every account.' },
  },
});
