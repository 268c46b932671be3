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

  @Field(() => String, {
    nullable: true,
    description:
      'The `deviceToken` of an earlier AuthPayload on this device, if any. Failed sign-ins that present it count against this device only, so strangers guessing the password cannot lock this device out.',
  })
  deviceToken?: string | null;
}

@InputType({ description: 'Who forgot their password.' })
export class ForgotPasswordInput {
  @Field(() => String, { description: 'Email address or username.' })
  identifier!: string;
}

@InputType({ description: 'A new password, authorized by an emailed reset token.' })
export class ResetPasswordInput {
  @Field(() => String, { description: 'The `token` parameter of the emailed reset link.' })
  token!: string;

  @Field(() => String, { description: '12–256 characters; not a common password, not containing the email or username.' })
  newPassword!: string;

  @Field(() => String, {
    nullable: true,
    description: "The device token this device got at its last sign-in, if any: after the reset it still counts as the owner's device, whoever spends the budget of the account's other former devices.",
  })
  deviceToken?: string | null;
}

@InputType({ description: 'A new password, authorized by the current one.' })
export class ChangePasswordInput {
  @Field(() => String, { description: 'The password in use now.' })
  currentPassword!: string;

  @Field(() => String, { description: '12–256 characters; not a common password, not containing the email or username.' })
  newPassword!: string;

  @Field(() => String, { nullable: true, description: 'A TOTP or recovery code, required when MFA is on.' })
  code?: string | null;
}
