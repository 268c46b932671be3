import { Field, ObjectType } from 'type-graphql';

@ObjectType({ simpleResolvers: true, description: 'A new authenticator secret, shown once; nothing changes until confirmTotpEnrollment.' })
export class TotpEnrollment {
  @Field(() => String, { description: 'Base32 secret, for authenticator apps that cannot read the URI.' })
  secret!: string;

  @Field(() => String, { description: 'otpauth://totp/… URI (issuer, account, SHA1, 6 digits, 30 s), for a QR code.' })
  otpauthUri!: string;
}
