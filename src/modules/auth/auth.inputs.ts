import { Field, InputType } from 'type-graphql';

@InputType({ description: 'A new account.' })
export class RegisterInput {
  @Field(() => String, { description: 'Email address; stored trimmed and lower-cased.' })
  email!: string;

  @Field(() => String, { description: '3–32 letters, digits, ".", "_" or "-"; unique regardless of case.' })
  username!: string;

  @Field(() => String, { description: '12–256 characters.' })
  password!: string;

  @Field(() => String, { nullable: true, description: 'Given name.' })
  firstName?: string | null;

  @Field(() => String, { nullable: true, description: 'Family name.' })
  lastName?: string | null;
}

@InputType({ description: 'Credentials for signing in.' })
export class LoginInput {
  @Field(() => String, { description: 'Email address or username.' })
  identifier!: string;

  @Field(() => String, { description: 'The account password.' })
  password!: string;
}
