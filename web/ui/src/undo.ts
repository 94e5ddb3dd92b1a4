//! Local undo/redo: only the person's own edits, as inverse ops in code points, kept valid by
//! transforming both stacks through every edit that arrives from elsewhere. Pure; the editor
//! binding feeds it.

import { compose, invert, isNoop, type Op, transform } from './ot';

/** Most undo steps kept (older ones are forgotten first). */
export const MAX_UNDO_STEPS = 500;
/** Edits closer together than this become one undo step (a burst of typing). */
export const GROUP_MS = 700;

export class UndoStack {
  /** Inverses of the person's edits; the last one applies to the current text. */
  private undos: Op[] = [];
  /** Inverses of undone steps; the last one applies to the current text. */
  private redos: Op[] = [];
  private lastEditAt = -Infinity;
  private grouping = false;

  /** The person made `op` on `before` at time `nowMs`. Clears the redo stack. */
  record(before: string, op: Op, nowMs: number): void {
    if (isNoop(op)) return;
    const inverse = invert(before, op);
    const top = this.undos.length - 1;
    if (this.grouping && top >= 0 && nowMs - this.lastEditAt < GROUP_MS) {
      this.undos[top] = compose(inverse, this.undos[top]!);
    } else {
      this.push(this.undos, inverse);
    }
    this.lastEditAt = nowMs;
    this.grouping = true;
    this.redos = [];
  }

  /** Ends the current group (the cursor jumped, or an undo happened). */
  seal(): void {
    this.grouping = false;
  }

  /** An edit from elsewhere, `op`, was applied to the current text: keep both stacks valid. */
  transform(op: Op): void {
    if (isNoop(op)) return;
    for (const stack of [this.undos, this.redos]) {
      let incoming = op;
      for (let i = stack.length - 1; i >= 0; i--) {
        // The other edit happened first: it wins ties.
        [stack[i], incoming] = transform(stack[i]!, incoming);
      }
    }
  }

  /** The op undoing the last step (applies to the current text), or null. */
  popUndo(): Op | null {
    this.seal();
    return popEffective(this.undos);
  }

  /** The op redoing the last undone step, or null. */
  popRedo(): Op | null {
    this.seal();
    return popEffective(this.redos);
  }

  /** After applying undo op `op` to `before`: remember how to redo it. */
  pushRedo(before: string, op: Op): void {
    this.push(this.redos, invert(before, op));
  }

  /** After applying redo op `op` to `before`: remember how to undo it again. */
  pushUndo(before: string, op: Op): void {
    this.push(this.undos, invert(before, op));
  }

  /** Forgets everything (the text was replaced). */
  clear(): void {
    this.undos = [];
    this.redos = [];
    this.grouping = false;
  }

  /** Steps that can be undone and redone. */
  depth(): { undo: number; redo: number } {
    return { undo: this.undos.length, redo: this.redos.length };
  }

  private push(stack: Op[], op: Op): void {
    stack.push(op);
    if (stack.length > MAX_UNDO_STEPS) stack.splice(0, stack.length - MAX_UNDO_STEPS);
  }
}

/** Pops until an op that still changes something (others may have removed its effect). */
function popEffective(stack: Op[]): Op | null {
  while (stack.length > 0) {
    const op = stack.pop()!;
    if (!isNoop(op)) return op;
  }
  return null;
}
