// openapi.yaml describes the API the code serves: every route of the router
// and no other, every error code, and for each message schema of
// src/protocol/messages.ts the same fields with the same required ones, so the
// document and the code cannot drift apart.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import * as messages from '../src/protocol/messages.js';
import { ERROR_CODES, KmgrError, type ErrorCode } from '../src/protocol/errors.js';
import { isOptional, shapeOf, type Schema } from '../src/protocol/schema.js';
import { routeList } from '../src/server/router.js';
import { httpStatus } from '../src/server/http-status.js';
import { ROOT } from './support/index.js';

interface ObjectSchema {
  type?: string;
  additionalProperties?: boolean;
  required?: string[];
  properties?: Record<string, unknown>;
}
interface OpenApi {
  paths: Record<string, Record<string, unknown>>;
  components: { schemas: Record<string, ObjectSchema & { enum?: string[]; description?: string }> };
}

const doc = parse(readFileSync(join(ROOT, 'openapi.yaml'), 'utf8')) as OpenApi;
const METHODS = ['get', 'put', 'post', 'patch', 'delete'];

t.test('the paths and methods of openapi.yaml are exactly the routes of the router', async (t) => {
  const documented = Object.entries(doc.paths)
    .flatMap(([path, ops]) => Object.keys(ops).filter((m) => METHODS.includes(m)).map((m) => `${m.toUpperCase()} ${path}`))
    .sort();
  t.same(documented, routeList().sort(), 'the same routes, each with the same methods');
});

t.test('the ErrorCode enum names every error code, and its table gives each status', async (t) => {
  const schema = doc.components.schemas.ErrorCode!;
  t.same([...(schema.enum ?? [])].sort(), Object.keys(ERROR_CODES).sort(), 'the same codes');
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    // A status of — marks a code only the client raises (it never crosses HTTP).
    const row = new RegExp(`^\\| \`${code}\` \\| (\\w+) \\| (\\d{3}|—) \\|`, 'm').exec(schema.description ?? '');
    if (!row) {
      t.fail(`the ErrorCode table has no row for ${code}`);
      continue;
    }
    t.equal(row[1], ERROR_CODES[code], `${code}: its kind`);
    if (row[2] !== '—') t.equal(Number(row[2]), httpStatus(new KmgrError(code, 'x')), `${code}: its HTTP status`);
  }
});

t.test('each message schema has its component, with the same fields and required fields', async (t) => {
  const schemas = Object.entries(messages).filter(([, v]) => typeof v === 'function' && shapeOf(v as Schema<unknown>) !== undefined) as Array<[string, Schema<unknown>]>;
  t.ok(schemas.length >= 20, `found the message schemas (${schemas.length})`);
  for (const [name, schema] of schemas) {
    // BindingStatementSchema: the TypeScript name of the type is taken by the interface.
    const component = doc.components.schemas[name.replace(/Schema$/, '')];
    if (!component) {
      t.fail(`openapi.yaml has no component for ${name}`);
      continue;
    }
    const shape = shapeOf(schema)!;
    t.same(Object.keys(component.properties ?? {}).sort(), Object.keys(shape).sort(), `${name}: the same fields`);
    const required = Object.entries(shape).filter(([, s]) => !isOptional(s)).map(([k]) => k).sort();
    t.same([...(component.required ?? [])].sort(), required, `${name}: the same required fields`);
    t.equal(component.additionalProperties, false, `${name}: unknown fields are refused, as the schema refuses them`);
  }
});
