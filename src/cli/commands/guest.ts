import type { Command } from 'commander'
import { resolve } from 'node:path'
import { formatSize } from '../../manifest/lite.ts'
import { homeOption, type CliContext } from '../context.ts'
import { table } from '../table.ts'

/** `omega guest build|ls|rm|probe`: microVM guest images and what this host can run */
export function guestCommands (program: Command, ctx: CliContext): void {
  const guest = program.command('guest').description('Build and list microVM guest images (frontier branes); probe the host\'s VMM')
  const signal = ctx.signal === undefined ? {} : { signal: ctx.signal }

  guest.command('build')
    .description('Build the guest image NAME from a workload directory (it must hold an executable "run")')
    .argument('<name>', 'the name frontier branes use: guest = "NAME"')
    .requiredOption('--from <dir>', 'the workload directory, /app in the guest')
    .option('--kernel <file>', 'the kernel (default: the newest /boot/vmlinuz-*-cloud-amd64)')
    .option('--modules <dir>', 'the kernel\'s modules (default: /lib/modules/<release>)')
    .option('--busybox <file>', 'a static busybox (default: /bin/busybox)')
    .option('--json', 'print as JSON')
    .action(async (name: string, opts: { from: string, kernel?: string, modules?: string, busybox?: string, json?: boolean }, command: Command) => {
      const { buildGuest } = await import('../../runtime/microvm/index.ts')
      const image = await buildGuest({
        home: ctx.home(homeOption(command)),
        name,
        from: resolve(ctx.cwd, opts.from),
        ...(opts.kernel === undefined ? {} : { kernel: resolve(ctx.cwd, opts.kernel) }),
        ...(opts.modules === undefined ? {} : { modules: resolve(ctx.cwd, opts.modules) }),
        ...(opts.busybox === undefined ? {} : { busybox: resolve(ctx.cwd, opts.busybox) }),
        ...signal
      })
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(image, null, 2) + '\n')
      } else {
        ctx.stdout.write(`${image.name} ${image.id} (kernel ${image.kernelRelease}, initramfs ${formatSize(image.initrdBytes)})\n`)
      }
    })

  guest.command('ls')
    .description('List the guest images built on this node')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const { listGuests } = await import('../../runtime/microvm/index.ts')
      const images = await listGuests(ctx.home(homeOption(command)))
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(images, null, 2) + '\n')
      } else if (images.length === 0) {
        ctx.stdout.write('No guest images (build one with "omega guest build NAME --from DIR")\n')
      } else {
        ctx.stdout.write(table(['name', 'id', 'kernel', 'initramfs'], images.map((i) => [i.name, i.id.slice(0, 19) + '…', i.kernelRelease, formatSize(i.initrdBytes)])))
      }
    })

  guest.command('rm')
    .description('Remove a guest image name (its files go with the last name)')
    .argument('<name>')
    .action(async (name: string, _opts: unknown, command: Command) => {
      const { removeGuest } = await import('../../runtime/microvm/index.ts')
      await removeGuest(ctx.home(homeOption(command)), name)
      ctx.stdout.write(`removed ${name}\n`)
    })

  guest.command('probe')
    .description('What this host can run: the VMM, KVM or TCG, VFIO (what `omega node` advertises as frontier)')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { probeFrontier } = await import('../../runtime/microvm/index.ts')
      const probe = await probeFrontier()
      if (opts.json === true) {
        ctx.stdout.write(JSON.stringify(probe, null, 2) + '\n')
        return
      }
      ctx.stdout.write([
        `frontier: ${probe.frontier ? 'yes' : 'no'}`,
        `vmm:      ${probe.vmm ?? 'none'}`,
        `accel:    ${probe.accel}${probe.accel === 'tcg' ? ' (software emulation)' : ' (hardware KVM)'}`,
        `vfio:     ${probe.vfio ? 'yes' : 'no (gpu = "passthrough" is refused here)'}`,
        ...(probe.reason === undefined ? [] : [`reason:   ${probe.reason}`])
      ].join('\n') + '\n')
    })
}
