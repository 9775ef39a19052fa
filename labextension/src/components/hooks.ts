/**
 * React hooks over Lumino signals: re-render a component when a model says it changed.
 */
import { ISignal } from '@lumino/signaling';
import * as React from 'react';
import { flushSync } from 'react-dom';

/** A counter that moves each time `signal` fires (read the model directly after it). */
export function useSignalTick<S>(signal: ISignal<S, unknown> | null): number {
  const [tick, setTick] = React.useState(0);
  React.useEffect(() => {
    if (!signal) {
      return;
    }
    const slot = () => setTick(n => n + 1);
    signal.connect(slot);
    return () => {
      signal.disconnect(slot);
    };
  }, [signal]);
  return tick;
}

/**
 * The latest value a signal carries, starting from `initial`.
 *
 * With `sync`, the component re-renders inside the signal's emission. The feed client emits
 * from an animation-frame callback: rendering there lands in that frame's paint, where a
 * normally scheduled React update would run after it and show a frame later.
 */
export function useSignalValue<S, T>(
  signal: ISignal<S, T> | null,
  initial: T,
  options: { sync?: boolean } = {}
): T {
  const [value, setValue] = React.useState<{ v: T }>({ v: initial });
  const sync = !!options.sync;
  React.useEffect(() => {
    setValue({ v: initial });
    if (!signal) {
      return;
    }
    const slot = (_: S, next: T) => {
      if (sync) {
        flushSync(() => setValue({ v: next }));
      } else {
        setValue({ v: next });
      }
    };
    signal.connect(slot);
    return () => {
      signal.disconnect(slot);
    };
    // Only a new signal (another project) restarts from `initial`.
  }, [signal, sync]);
  return value.v;
}
