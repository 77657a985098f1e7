import neostandard from 'neostandard'
import tseslint from 'typescript-eslint'

export default [
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**', 'build/**', 'examples/**/*.js', 'bindings/**'] },
  ...neostandard({ ts: true }),
  {
    files: ['src/**/*.ts', 'bench/**/*.ts', 'test/**/*.ts'],
    languageOptions: {
      parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname }
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }]
      }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/explicit-function-return-type': ['error', { allowExpressions: true, allowTypedFunctionExpressions: true }],
      curly: ['error', 'all'],
      'no-console': 'error',
      // a module is imported through its index.ts, or through its lite.ts: the part of its
      // API that loads nothing heavy (no wasm, no mesh), for commands that must start fast
      'no-restricted-imports': ['error', {
        patterns: [
          { regex: '^\\.\\./(?:\\.\\./)*(?!runtime/)[a-z-]+/(?!index\\.ts$|lite\\.ts$).+', message: 'Import another module through its index.ts (or its lite.ts)' },
          { regex: '^\\.\\./(?:\\.\\./)*runtime/[a-z-]+/(?!index\\.ts$|lite\\.ts$).+', message: 'Import a runtime through its index.ts (or its lite.ts)' }
        ]
      }]
    }
  },
  {
    // the dashboard's page runs in a browser
    files: ['dashboard/**/*.js'],
    languageOptions: {
      globals: { document: 'readonly', EventSource: 'readonly', fetch: 'readonly', crypto: 'readonly', atob: 'readonly', TextEncoder: 'readonly', Node: 'readonly' }
    }
  },
  {
    files: ['src/**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: { 'no-restricted-imports': 'off' }
  }
]
