/**
 * The in-flight limit: how many operations one backend instance has on
 * its store at once, and the first-come-first-served wait for a turn.
 *
 * @module
 */
import { MAX_TIMER_MS } from "./deadline.ts";

/**
 * How many operations one backend instance has on its store at once. A
 * burst beyond it waits its turn here, first come first, instead of
 * piling onto a store that then answers nobody in time.
 */
export const MAX_IN_FLIGHT = 16;
/** At most `size` holders at once; the others wait, first come first. */
export class Turns {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** A turn at once, as its release, or `undefined` if none is free. */
  tryTake(): (() => void) | undefined {
    if (this.#free === 0) return undefined;
    this.#free--;
    return this.#releaser();
  }

  /** A turn within `ms`, as its release, or `undefined` if none came. */
  take(ms: number): Promise<(() => void) | undefined> {
    return new Promise((resolve) => {
      const turn = () => {
        clearTimeout(timer);
        resolve(this.#releaser());
      };
      const timer = setTimeout(() => {
        const at = this.#waiting.indexOf(turn);
        if (at !== -1) this.#waiting.splice(at, 1);
        resolve(undefined);
      }, Math.min(Math.max(ms, 0), MAX_TIMER_MS));
      this.#waiting.push(turn);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    };
  }
}
