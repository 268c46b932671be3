import { Field, InputType } from 'type-graphql';
import { Role } from './role.js';

@InputType({ description: 'Changes to the signed-in user\'s own profile; omitted fields stay as they are.' })
export class UpdateProfileInput {
  @Field(() => String, { nullable: true, description: 'New username (3–32 letters, digits, ".", "_" or "-").' })
  username?: string | null;

  @Field(() => String, { nullable: true, description: 'Given name; an empty string clears it.' })
  firstName?: string | null;

  @Field(() => String, { nullable: true, description: 'Family name; an empty string clears it.' })
  lastName?: string | null;
}

@InputType({ description: 'An account created by an admin.' })
export class CreateUserInput {
  @Field(() => String, { description: 'Email address; stored trimmed and lower-cased.' })
  email!: string;

  @Field(() => String, { description: '3–32 letters, digits, ".", "_" or "-"; unique regardless of case.' })
  username!: string;

  @Field(() => String, { description: 'Initial password; the password policy applies.' })
  password!: string;

  @Field(() => String, { nullable: true, description: 'Given name.' })
  firstName?: string | null;

  @Field(() => String, { nullable: true, description: 'Family name.' })
  lastName?: string | null;

  @Field(() => Role, { nullable: true, description: 'Defaults to USER.' })
  role?: Role | null;

  @Field(() => Boolean, { nullable: true, description: 'Defaults to true.' })
  active?: boolean | null;
}

@InputType({ description: 'Changes an admin makes to an account; omitted fields stay as they are.' })
export class UpdateUserInput {
  @Field(() => String, { nullable: true, description: 'New email address; the account becomes unverified.' })
  email?: string | null;

  @Field(() => String, { nullable: true, description: 'New username.' })
  username?: string | null;

  @Field(() => String, { nullable: true, description: 'Given name; an empty string clears it.' })
  firstName?: string | null;

  @Field(() => String, { nullable: true, description: 'Family name; an empty string clears it.' })
  lastName?: string | null;

  @Field(() => Role, { nullable: true, description: 'New role; takes effect on the user\'s next request.' })
  role?: Role | null;

  @Field(() => Boolean, { nullable: true, description: 'False deactivates: every session ends at once and sign-in fails.' })
  active?: boolean | null;
}

@InputType({ description: 'Narrows the `users` list; all given conditions apply.' })
export class UserFilter {
  @Field(() => String, { nullable: true, description: 'Case-insensitive match on email, username, first or last name.' })
  search?: string | null;

  @Field(() => Role, { nullable: true, description: 'Only accounts with this role.' })
  role?: Role | null;

  @Field(() => Boolean, { nullable: true, description: 'Only active (true) or deactivated (false) accounts.' })
  active?: boolean | null;
}
