// The optimizer's view of relational nodes: each is the source of the linear chain above it, and
// each of its inputs is optimized as a plan of its own (a stage below the exchange).
import type { PlanNode } from '../plan.ts';

/** Rebuilds the chain with the relational node at its bottom (if any) holding optimized inputs. */
export function optimizeRelationalInputs(node: PlanNode, optimize: (p: PlanNode) => PlanNode): PlanNode {
  if ('inputs' in node) return { ...node, inputs: node.inputs.map(optimize) } as PlanNode;
  if ('input' in node) {
    const input = optimizeRelationalInputs(node.input, optimize);
    return input === node.input ? node : ({ ...node, input } as PlanNode);
  }
  return node;
}
