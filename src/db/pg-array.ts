/**
 * `values` as one PostgreSQL array literal (`{"a","b"}`), for a single `?` cast to an array type
 * (`= any(?::uuid[])`, `unnest(?::uuid[])`). A JavaScript array bound to `?` does not work: the
 * query layer (knex, under MikroORM) expands it into a comma-separated list of values, which is a
 * syntax error in `any(…)` (and a malformed array literal for one value).
 */
export function pgArray(values: readonly string[]): string {
  return `{${values.map((value) => `"${value.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}
