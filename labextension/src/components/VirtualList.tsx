/**
 * A windowed list for rows of different heights: only the rows in (and near) the viewport
 * are in the DOM, so a feed of thousands of rows renders as fast as a feed of thirty.
 *
 * Heights start as an estimate and are replaced by measurements (one ResizeObserver for the
 * list); offsets are prefix sums over them. Spacers above and below stand in for the rows not
 * rendered. While the user is at the bottom the list follows new rows (like a terminal); once
 * they scroll up it stays where they are.
 *
 * The container has the ARIA `feed` role with each row an `article` that knows its position
 * (`aria-posinset`/`aria-setsize`), the pattern screen readers expect for lists that load rows
 * as they scroll.
 */
import * as React from 'react';

// Keys that scroll a focused list, and how long after the reader's input its scroll events
// still count as the reader's (smooth scrolling runs on after the input).
const SCROLL_KEYS = new Set([
  'ArrowUp',
  'ArrowDown',
  'PageUp',
  'PageDown',
  'Home',
  'End',
  ' '
]);
const READER_SCROLL_MS = 1000;

/** Offsets of each row's top; `offsets[n]` is the total height. */
export function prefixOffsets(
  count: number,
  heightOf: (index: number) => number
): Float64Array {
  const offsets = new Float64Array(count + 1);
  for (let i = 0; i < count; i++) {
    offsets[i + 1] = offsets[i] + heightOf(i);
  }
  return offsets;
}

/** The first row whose bottom is below `y` (binary search over the offsets). */
function rowAt(offsets: Float64Array, y: number): number {
  let lo = 0;
  let hi = offsets.length - 2;
  if (hi < 0) {
    return 0;
  }
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (offsets[mid + 1] <= y) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/** The rows to render: `[start, end)` covering the viewport plus `overscan` pixels each way. */
export function visibleRange(
  offsets: Float64Array,
  scrollTop: number,
  viewport: number,
  overscan: number
): [number, number] {
  const count = offsets.length - 1;
  if (count <= 0) {
    return [0, 0];
  }
  const start = rowAt(offsets, Math.max(0, scrollTop - overscan));
  const end = rowAt(offsets, scrollTop + viewport + overscan) + 1;
  return [start, Math.min(count, end)];
}

export interface IVirtualListProps<T> {
  items: readonly T[];
  itemKey: (item: T) => string;
  renderItem: (item: T, index: number) => React.ReactNode;
  /** A row's height before it is measured, in pixels. */
  estimateHeight: number;
  /** Pixels rendered beyond each edge of the viewport. */
  overscan?: number;
  /** Used when the container has no size yet (before layout; in tests). */
  fallbackViewport?: number;
  className?: string;
  label: string;
  busy?: boolean;
  /** Extra attributes for the scroll container (e.g. data-last-seq). */
  attributes?: Record<string, string | number>;
}

export function VirtualList<T>(props: IVirtualListProps<T>): JSX.Element {
  const {
    items,
    itemKey,
    renderItem,
    estimateHeight,
    overscan = 600,
    fallbackViewport = 800
  } = props;
  const scroller = React.useRef<HTMLDivElement>(null);
  const heights = React.useRef(new Map<string, number>());
  // Measurements land here and are folded in once per frame.
  const [measured, setMeasured] = React.useState(0);
  const [scrollTop, setScrollTop] = React.useState(0);
  const [viewportHeight, setViewportHeight] = React.useState(0);
  // At the bottom (or never scrolled): new rows keep the list at the bottom.
  const following = React.useRef(true);
  const frame = React.useRef<number | null>(null);

  const observer = React.useMemo(() => {
    if (typeof ResizeObserver === 'undefined') {
      return null;
    }
    return new ResizeObserver(entries => {
      let changed = false;
      for (const entry of entries) {
        const element = entry.target as HTMLElement;
        if (element === scroller.current) {
          setViewportHeight(entry.contentRect.height);
          continue;
        }
        const key = element.dataset.key;
        const height = element.offsetHeight;
        if (
          key !== undefined &&
          height > 0 &&
          heights.current.get(key) !== height
        ) {
          heights.current.set(key, height);
          changed = true;
        }
      }
      if (changed && frame.current === null) {
        frame.current = requestAnimationFrame(() => {
          frame.current = null;
          setMeasured(n => n + 1);
        });
      }
    });
  }, []);
  React.useLayoutEffect(() => {
    const node = scroller.current;
    if (node && observer) {
      // The viewport's height comes from the observer, not from reading layout per render.
      observer.observe(node);
    }
    return () => {
      observer?.disconnect();
      if (frame.current !== null) {
        cancelAnimationFrame(frame.current);
      }
    };
  }, [observer]);

  const offsets = React.useMemo(
    () =>
      prefixOffsets(
        items.length,
        i => heights.current.get(itemKey(items[i])) ?? estimateHeight
      ),
    // `measured` invalidates when a measurement changed a height.
    [items, measured, estimateHeight, itemKey]
  );
  const viewport = viewportHeight || fallbackViewport;
  const total = offsets[items.length];
  // Following, the window is the bottom one, in this very render: no second pass after
  // the scroll it causes.
  const top = following.current ? Math.max(0, total - viewport) : scrollTop;
  const [start, end] = visibleRange(offsets, top, viewport, overscan);

  // When the reader last moved the list (wheel, touch, keys, the scrollbar). Only the reader
  // stops the following: scroll events also come from layout (the list hidden and shown
  // again, rows measured, the panel resized), and those must not leave a live feed behind.
  const readerMoved = React.useRef(-Infinity);
  const dragging = React.useRef(false);
  const markReader = React.useCallback(() => {
    readerMoved.current = performance.now();
  }, []);
  const onKeyDown = React.useCallback(
    (event: React.KeyboardEvent) => {
      if (SCROLL_KEYS.has(event.key)) {
        markReader();
      }
    },
    [markReader]
  );
  const onPointerDown = React.useCallback((event: React.PointerEvent) => {
    // On the list itself, not on a row: the scrollbar.
    if (event.target === scroller.current) {
      dragging.current = true;
    }
  }, []);
  const onPointerUp = React.useCallback(() => {
    dragging.current = false;
  }, []);

  const onScroll = React.useCallback(() => {
    const node = scroller.current;
    if (!node) {
      return;
    }
    const atBottom =
      node.scrollTop + node.clientHeight >= node.scrollHeight - 24;
    if (atBottom) {
      following.current = true;
    } else if (
      node.clientHeight > 0 &&
      (dragging.current ||
        performance.now() - readerMoved.current < READER_SCROLL_MS)
    ) {
      following.current = false;
    }
    const at = node.scrollTop;
    setScrollTop(old => (Math.abs(old - at) < 1 ? old : at));
  }, []);

  React.useLayoutEffect(() => {
    const node = scroller.current;
    if (node && following.current && total > viewport) {
      // Only written, never read here: reading layout after a commit would force it.
      node.scrollTop = total;
    }
  });

  const rows: React.ReactNode[] = [];
  for (let i = start; i < end; i++) {
    const item = items[i];
    const key = itemKey(item);
    rows.push(
      <MeasuredRow
        key={key}
        rowKey={key}
        observer={observer}
        position={i + 1}
        size={items.length}
      >
        {renderItem(item, i)}
      </MeasuredRow>
    );
  }

  return (
    <div
      ref={scroller}
      className={`jp-EcodeVirtualList ${props.className ?? ''}`}
      role="feed"
      aria-label={props.label}
      aria-busy={props.busy ? 'true' : 'false'}
      tabIndex={0}
      onScroll={onScroll}
      onWheel={markReader}
      onTouchMove={markReader}
      onKeyDown={onKeyDown}
      onPointerDown={onPointerDown}
      onPointerUp={onPointerUp}
      onPointerCancel={onPointerUp}
      {...props.attributes}
    >
      <div style={{ height: offsets[start] }} aria-hidden="true" />
      {rows}
      <div style={{ height: total - offsets[end] }} aria-hidden="true" />
    </div>
  );
}

/** One rendered row, observed for its height while it is mounted. */
function MeasuredRow(props: {
  rowKey: string;
  observer: ResizeObserver | null;
  position: number;
  size: number;
  children: React.ReactNode;
}): JSX.Element {
  const { observer } = props;
  const ref = React.useRef<HTMLElement>(null);
  React.useLayoutEffect(() => {
    const element = ref.current;
    if (!element || !observer) {
      return;
    }
    observer.observe(element);
    return () => observer.unobserve(element);
  }, [observer]);
  return (
    <article
      ref={ref}
      data-key={props.rowKey}
      className="jp-EcodeVirtualList-row"
      aria-posinset={props.position}
      aria-setsize={props.size}
    >
      {props.children}
    </article>
  );
}
