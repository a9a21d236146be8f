/** Listener registries of a {@link ChatClient} (./client.ts): events by type, states, sync pages. */

/** A listener of values of type `T`. */
export type Listener<T> = (value: T) => void;

/** A set of listeners of one kind of value. */
export class ListenerSet<T> {
  private readonly fns = new Set<Listener<T>>();

  /** Add `fn`. @returns a function that removes it */
  add(fn: Listener<T>): () => void {
    this.fns.add(fn);
    return () => this.fns.delete(fn);
  }

  /** Call every listener with `value`, in the order they were added. */
  emit(value: T): void {
    for (const fn of this.fns) fn(value);
  }
}

/** Listener sets by event type (a server frame's `type`). */
export class TypedListeners {
  private readonly byType = new Map<string, ListenerSet<unknown>>();

  /** Add `fn` for frames of `type`. @returns a function that removes it */
  add(type: string, fn: Listener<unknown>): () => void {
    let set = this.byType.get(type);
    if (!set) this.byType.set(type, (set = new ListenerSet()));
    return set.add(fn);
  }

  /** Call the listeners of `type` with `frame`. */
  emit(type: string, frame: unknown): void {
    this.byType.get(type)?.emit(frame);
  }
}
