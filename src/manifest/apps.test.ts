// Apps side by side: combining plans, and refusing two apps that would share a brane
// name, a route or a resolver.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { appNameOf, checkManifest, combineApps } from './index.ts'

const plan = (file: string, text: string): ReturnType<typeof checkManifest>['plan'] => checkManifest(text, file).plan

describe('apps', () => {
  const shop = plan('/srv/shop/omega.toml', '[brane.cart]\nimage = "cart.wasm"\ntrigger = { http = "/cart/*" }\n\n[brane.mail]\nimage = "mail.wasm"\n\n[graph]\nedges = [{ from = "cart", to = "mail", on = "order" }]\n')
  const blog = plan('/srv/blog/blog.toml', '[app]\nname = "blog"\n\n[brane.posts]\nimage = "posts.wasm"\ntrigger = { http = "/posts/*" }\n')

  it('names an app by its [app] name, or by its file', () => {
    assert.equal(appNameOf('/srv/blog/blog.toml', blog), 'blog')
    assert.equal(appNameOf('/srv/shop/omega.toml', shop), 'omega')
    assert.equal(appNameOf('/x/My Shop.v2.yaml'), 'my-shop.v2')
  })

  it('combines apps into one plan whose branes remember their app and manifest', () => {
    const { plan: both, refused } = combineApps([{ name: 'shop', plan: shop }, { name: 'blog', plan: blog }])
    assert.equal(refused.size, 0)
    assert.deepEqual(both.branes.map((b) => [b.name, b.app, b.manifest]), [
      ['cart', 'shop', '/srv/shop/omega.toml'], ['mail', 'shop', '/srv/shop/omega.toml'], ['posts', 'blog', '/srv/blog/blog.toml']
    ])
    assert.deepEqual(both.edges, shop.edges)
  })

  it('refuses an app that shares a brane name or a route with another, naming both', () => {
    const copy = plan('/srv/copy.toml', '[brane.cart]\nimage = "other.wasm"\ntrigger = { http = "/other" }\n')
    assert.throws(() => combineApps([{ name: 'shop', plan: shop }, { name: 'copy', plan: copy }]), {
      name: 'DeploymentError', message: /app "copy" cannot run beside app "shop": both have a brane named "cart"/
    })
    const route = plan('/srv/r.toml', '[brane.basket]\nimage = "b.wasm"\ntrigger = { http = "/cart/*" }\n')
    assert.throws(() => combineApps([{ name: 'shop', plan: shop }, { name: 'r', plan: route }]), { message: /app "r" cannot run beside app "shop": both serve the route "\/cart\/\*"/ })
    // the same path on another host is another route
    const hosted = plan('/srv/h.toml', '[brane.basket]\nimage = "b.wasm"\ntrigger = { http = { route = "/cart/*", host = "b.example" } }\n')
    assert.equal(combineApps([{ name: 'shop', plan: shop }, { name: 'h', plan: hosted }]).plan.branes.length, 3)
  })

  it('leaves out the later of two colliding apps when told to skip (what every node of a mesh does alike)', () => {
    const copy = plan('/srv/copy.toml', '[brane.mail]\nimage = "other.wasm"\n')
    const { plan: kept, refused } = combineApps([{ name: 'shop', plan: shop }, { name: 'copy', plan: copy }, { name: 'blog', plan: blog }], { conflicts: 'skip' })
    assert.deepEqual(kept.branes.map((b) => b.name), ['cart', 'mail', 'posts'])
    assert.match(refused.get('copy') ?? '', /both have a brane named "mail"/)
  })
})
