// The builder inlines .svg files imported from TypeScript as their source text.
declare module '*.svg' {
  const value: string;
  export default value;
}
