// struct.get(field): the child column (zero-copy when the struct has no nulls; a null struct row
// makes the field null).
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { andBitsInto, bitmapBytes, copyBits, validity0 } from '../kernels/bitmap.ts';
import { allNull, withValidity } from '../kernels/data.ts';
import { describeArg, expectArity, ExpressionTypeError, type FunctionDef, type Params, requireKind } from './common.ts';

function fieldOf(params: Params): string {
  const f = params['field'];
  if (typeof f !== 'string' || !f) throw new ExpressionTypeError('struct.get needs params.field, a field name');
  return f;
}

export const structGet: FunctionDef = {
  name: 'struct.get',
  resolve(fields, params, ctx) {
    expectArity(ctx, fields, 1);
    requireKind(ctx, fields, 0, ['struct'], 'a struct operand');
    const name = fieldOf(params);
    const t = fields[0]!.type;
    if (t.kind === 'null') return DataType.null();
    const f = t.structFields().find((x) => x.name === name);
    if (!f) {
      throw new ExpressionTypeError(
        `struct.get: field '${name}' not found in ${describeArg(ctx, fields, 0)}; fields: ${
          t
            .structFields()
            .map((x) => `'${x.name}'`)
            .join(', ') || '(none)'
        }`,
      );
    }
    return f.type;
  },
  kernel(args, params, n, ctx) {
    const d = args[0]!;
    if (d.typeId === arrow.Type.Null) return allNull(ctx.outType.toArrow(), n);
    const j = (d.type as arrow.Struct).children.findIndex((f) => f.name === fieldOf(params));
    let child = d.children[j]!;
    if (child.length !== n) child = child.slice(0, n);
    const outer = validity0(d);
    if (outer === null) return child;
    // Field validity = struct validity AND child validity.
    const bits = new Uint8Array(bitmapBytes(n));
    copyBits(outer, 0, bits, 0, n);
    if (child.nullCount > 0) andBitsInto(bits, child.nullBitmap!, child.offset, n);
    return withValidity(child, bits);
  },
};
