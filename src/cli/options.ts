// The options every kmgr command receives from the entry point (src/cli/kmgr.ts).
// They live here, not in the entry point, so that command modules never import
// the module that imports them.
export interface GlobalOptions {
  home?: string;
  json?: boolean;
}
