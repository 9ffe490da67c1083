// A deliberately small validator: one schema per message, used by both the
// client (on replies) and the server (on requests). Failing input raises a
// KmgrError with code bad_request naming the offending field.
import { KmgrError, type ErrorCode } from './errors.js';

export type Schema<T> = (value: unknown, path: string) => T;
export type Infer<S> = S extends Schema<infer T> ? T : never;

export class SchemaError extends KmgrError {
  constructor(path: string, why: string, code: ErrorCode = 'bad_request') {
    super(code, `${path || 'body'} ${why}`);
  }
}

export function str(opts: { min?: number; max: number; pattern?: RegExp; name?: string }): Schema<string> {
  return (v, path) => {
    if (typeof v !== 'string') throw new SchemaError(path, 'must be a string');
    if (v.length < (opts.min ?? 0) || v.length > opts.max) throw new SchemaError(path, `must be ${opts.min ?? 0} to ${opts.max} characters long`);
    if (opts.pattern && !opts.pattern.test(v)) throw new SchemaError(path, `is not a valid ${opts.name ?? 'value'}`);
    return v;
  };
}

export function int(opts: { min: number; max: number }): Schema<number> {
  return (v, path) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new SchemaError(path, 'must be an integer');
    if (v < opts.min || v > opts.max) throw new SchemaError(path, `must be between ${opts.min} and ${opts.max}`);
    return v;
  };
}

export const bool: Schema<boolean> = (v, path) => {
  if (typeof v !== 'boolean') throw new SchemaError(path, 'must be true or false');
  return v;
};

export function oneOf<const T extends readonly string[]>(values: T): Schema<T[number]> {
  return (v, path) => {
    if (typeof v !== 'string' || !values.includes(v)) throw new SchemaError(path, `must be one of ${values.join(', ')}`);
    return v;
  };
}

export function nullable<T>(s: Schema<T>): Schema<T | null> {
  return (v, path) => (v === null ? null : s(v, path));
}

// What a schema accepts, kept beside it so that a test can compare the
// schemas with openapi.yaml (the document and the code must not drift).
const SHAPES = new WeakMap<Schema<unknown>, Shape>();
const OPTIONAL = new WeakSet<Schema<unknown>>();

/** The fields of an obj() schema, or undefined for any other schema. */
export function shapeOf(s: Schema<unknown>): Readonly<Record<string, Schema<unknown>>> | undefined {
  return SHAPES.get(s);
}

/** Whether a field schema was made by optional(). */
export function isOptional(s: Schema<unknown>): boolean {
  return OPTIONAL.has(s);
}

export function optional<T>(s: Schema<T>): Schema<T | undefined> {
  const o: Schema<T | undefined> = (v, path) => (v === undefined ? undefined : s(v, path));
  OPTIONAL.add(o);
  return o;
}

export function array<T>(s: Schema<T>, max: number): Schema<T[]> {
  return (v, path) => {
    if (!Array.isArray(v)) throw new SchemaError(path, 'must be an array');
    if (v.length > max) throw new SchemaError(path, `must have at most ${max} items`);
    return v.map((x, i) => s(x, `${path}[${i}]`));
  };
}

type Shape = Record<string, Schema<unknown>>;
type FromShape<S extends Shape> = { [K in keyof S as undefined extends Infer<S[K]> ? never : K]: Infer<S[K]> } & {
  [K in keyof S as undefined extends Infer<S[K]> ? K : never]?: Infer<S[K]>;
};

/** A JSON object with exactly these fields: unknown fields are refused, not ignored. */
export function obj<S extends Shape>(shape: S): Schema<FromShape<S>> {
  const schema: Schema<FromShape<S>> = (v, path) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError(path, 'must be a JSON object');
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) {
      if (!Object.prototype.hasOwnProperty.call(shape, k)) throw new SchemaError(path ? `${path}.${k}` : k, 'is not a known field');
    }
    for (const [k, s] of Object.entries(shape)) {
      const r = s((v as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
      if (r !== undefined) out[k] = r;
    }
    return out as FromShape<S>;
  };
  SHAPES.set(schema, shape);
  return schema;
}

/** Parses JSON text then validates it; a parse failure is a bad_request too. */
export function parseJson<T>(text: string, schema: Schema<T>): T {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new SchemaError('', 'is not valid JSON');
  }
  return schema(v, '');
}
