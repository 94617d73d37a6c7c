using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.TestApiServer.Tests;

/// <summary>The double must behave like kube-apiserver where the product depends on it; each test pins one behaviour.</summary>
public sealed class ApiServerBehaviourTests : IAsyncLifetime
{
    private TestApiServer _server = null!;
    private k8s.Kubernetes _client = null!;

    public async Task InitializeAsync()
    {
        _server = await TestApiServer.StartAsync(bookmarkInterval: TimeSpan.FromMilliseconds(100));
        _client = _server.CreateClient();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    private static V1Service Service(string name, Dictionary<string, string>? labels = null) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Labels = labels },
        Spec = new V1ServiceSpec { Type = "LoadBalancer", Ports = [new V1ServicePort { Port = 80 }] },
    };

    [Fact]
    public async Task A_watch_from_the_lists_version_sees_later_changes_in_order()
    {
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("before"), "default");
        var list = await _client.CoreV1.ListServiceForAllNamespacesAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var seen = new List<(WatchEventType, string)>();
        var watching = Task.Run(async () =>
        {
            await foreach (var (type, svc) in _client.CoreV1.WatchListServiceForAllNamespacesAsync(resourceVersion: list.Metadata.ResourceVersion, cancellationToken: cts.Token))
            {
                seen.Add((type, svc.Metadata.Name));
                if (seen.Count == 3)
                {
                    return;
                }
            }
        });

        await _client.CoreV1.CreateNamespacedServiceAsync(Service("after"), "default");
        var after = await _client.CoreV1.ReadNamespacedServiceAsync("after", "default");
        after.Metadata.Labels = new Dictionary<string, string> { ["x"] = "y" };
        await _client.CoreV1.ReplaceNamespacedServiceAsync(after, "after", "default");
        await _client.CoreV1.DeleteNamespacedServiceAsync("before", "default");
        await watching.WaitAsync(cts.Token);

        Assert.Equal([(WatchEventType.Added, "after"), (WatchEventType.Modified, "after"), (WatchEventType.Deleted, "before")], seen);
    }

    [Fact]
    public async Task A_watch_from_a_compacted_version_gets_410_through_onError()
    {
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("a"), "default");
        var list = await _client.CoreV1.ListServiceForAllNamespacesAsync();
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("b"), "default");
        _server.CompactHistory();

        // KubernetesClient does not throw for an ERROR event: it hands it to onError and ends the stream.
        KubernetesException? error = null;
        await foreach (var _ in _client.CoreV1.WatchListServiceForAllNamespacesAsync(resourceVersion: list.Metadata.ResourceVersion, onError: e => error = e as KubernetesException))
        {
            Assert.Fail("no event may follow an expired version");
        }

        Assert.NotNull(error);
        Assert.Equal(410, error.Status.Code);
        Assert.Equal("Expired", error.Status.Reason);
    }

    [Fact]
    public async Task Bookmarks_carry_the_current_version()
    {
        var list = await _client.CoreV1.ListServiceForAllNamespacesAsync();
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("a"), "default");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        await foreach (var (type, svc) in _client.CoreV1.WatchListServiceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: list.Metadata.ResourceVersion, cancellationToken: cts.Token))
        {
            if (type == WatchEventType.Bookmark)
            {
                Assert.Equal(_server.Store.Revision.ToString(), svc.Metadata.ResourceVersion);
                return;
            }
        }

        Assert.Fail("no bookmark");
    }

    [Fact]
    public async Task A_stale_update_and_a_stale_status_write_get_409_Conflict()
    {
        var created = await _client.CoreV1.CreateNamespacedServiceAsync(Service("a"), "default");
        var fresh = await _client.CoreV1.ReadNamespacedServiceAsync("a", "default");
        fresh.Metadata.Labels = new Dictionary<string, string> { ["v"] = "2" };
        await _client.CoreV1.ReplaceNamespacedServiceAsync(fresh, "a", "default");

        created.Metadata.Labels = new Dictionary<string, string> { ["v"] = "stale" };
        var update = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.ReplaceNamespacedServiceAsync(created, "a", "default"));
        created.Status = new V1ServiceStatus { LoadBalancer = new V1LoadBalancerStatus { Ingress = [new V1LoadBalancerIngress { Ip = "192.0.2.1" }] } };
        var status = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.ReplaceNamespacedServiceStatusAsync(created, "a", "default"));

        Assert.Equal(HttpStatusCode.Conflict, update.Response.StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, status.Response.StatusCode);
        Assert.Contains("the object has been modified", status.Response.Content, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_writes_ignore_spec_and_spec_writes_ignore_status()
    {
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("a"), "default");
        var svc = await _client.CoreV1.ReadNamespacedServiceAsync("a", "default");
        svc.Spec.Ports[0].Port = 8080;
        svc.Status = new V1ServiceStatus { LoadBalancer = new V1LoadBalancerStatus { Ingress = [new V1LoadBalancerIngress { Ip = "192.0.2.1" }] } };
        var afterStatus = await _client.CoreV1.ReplaceNamespacedServiceStatusAsync(svc, "a", "default");
        var portAfterStatusWrite = afterStatus.Spec.Ports[0].Port;

        afterStatus.Spec.Ports[0].Port = 9090;
        afterStatus.Status.LoadBalancer.Ingress[0].Ip = "192.0.2.99";
        var afterSpec = await _client.CoreV1.ReplaceNamespacedServiceAsync(afterStatus, "a", "default");

        Assert.Equal(80, portAfterStatusWrite);
        Assert.Equal("192.0.2.1", afterSpec.Status.LoadBalancer.Ingress[0].Ip);
        Assert.Equal(9090, afterSpec.Spec.Ports[0].Port);
    }

    [Fact]
    public async Task Merge_json_and_strategic_patches_apply_and_a_failed_test_op_is_422()
    {
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("a"), "default");

        await _client.CoreV1.PatchNamespacedServiceAsync(new V1Patch("""{"metadata":{"annotations":{"a":"1","b":"2"}}}""", V1Patch.PatchType.MergePatch), "a", "default");
        await _client.CoreV1.PatchNamespacedServiceAsync(new V1Patch("""{"metadata":{"annotations":{"b":null}}}""", V1Patch.PatchType.StrategicMergePatch), "a", "default");
        var patched = await _client.CoreV1.PatchNamespacedServiceAsync(new V1Patch("""[{"op":"add","path":"/metadata/annotations/lballocator.io~1pool","value":"main"}]""", V1Patch.PatchType.JsonPatch), "a", "default");
        var failed = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.PatchNamespacedServiceAsync(
            new V1Patch("""[{"op":"test","path":"/metadata/annotations/a","value":"nope"}]""", V1Patch.PatchType.JsonPatch), "a", "default"));

        Assert.Equal(new Dictionary<string, string> { ["a"] = "1", ["lballocator.io/pool"] = "main" }, patched.Metadata.Annotations);
        Assert.Equal((HttpStatusCode)422, failed.Response.StatusCode);
    }

    [Fact]
    public async Task Label_selectors_filter_lists()
    {
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("web", new() { ["app"] = "web", ["tier"] = "front" }), "default");
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("db", new() { ["app"] = "db" }), "default");

        Assert.Equal(["web"], (await _client.CoreV1.ListNamespacedServiceAsync("default", labelSelector: "app=web")).Items.Select(s => s.Metadata.Name));
        Assert.Equal(["db"], (await _client.CoreV1.ListNamespacedServiceAsync("default", labelSelector: "!tier")).Items.Select(s => s.Metadata.Name));
        Assert.Equal(["db", "web"], (await _client.CoreV1.ListNamespacedServiceAsync("default", labelSelector: "app in (web,db)")).Items.Select(s => s.Metadata.Name));
        Assert.Equal(["db"], (await _client.CoreV1.ListNamespacedServiceAsync("default", labelSelector: "app notin (web)")).Items.Select(s => s.Metadata.Name));
    }

    [Fact]
    public async Task Dropped_watches_end_and_injected_500s_recover()
    {
        var list = await _client.CoreV1.ListServiceForAllNamespacesAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var watch = Task.Run(async () =>
        {
            await foreach (var _ in _client.CoreV1.WatchListServiceForAllNamespacesAsync(resourceVersion: list.Metadata.ResourceVersion, cancellationToken: cts.Token))
            {
            }
        });
        // The watch must have reached the server before it is dropped; a fixed delay was not enough on a busy machine.
        while (_server.OpenWatches == 0 && !cts.IsCancellationRequested)
        {
            await Task.Delay(10);
        }

        _server.DropWatches();
        var ended = await Task.WhenAny(watch, Task.Delay(5000));

        _server.FailRequests(2);
        var first = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.ListServiceForAllNamespacesAsync());
        await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.ListServiceForAllNamespacesAsync());
        var recovered = await _client.CoreV1.ListServiceForAllNamespacesAsync();

        Assert.Same(watch, ended);
        Assert.Equal(HttpStatusCode.InternalServerError, first.Response.StatusCode);
        Assert.NotNull(recovered);
    }

    [Fact]
    public async Task Create_twice_is_409_AlreadyExists_and_custom_resources_round_trip()
    {
        await _client.CoreV1.CreateNamespacedServiceAsync(Service("a"), "default");
        var again = await Assert.ThrowsAsync<HttpOperationException>(() => _client.CoreV1.CreateNamespacedServiceAsync(Service("a"), "default"));

        var pool = new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "p" }, Spec = new IPAddressPoolSpec { Addresses = ["192.0.2.0/24"] } };
        await _client.CustomObjects.CreateNamespacedCustomObjectAsync(pool, Api.Group, Api.Version, "lballocator-system", "ipaddresspools");
        using var generic = new GenericClient(_client, Api.Group, Api.Version, "ipaddresspools");
        var read = await generic.ReadNamespacedAsync<V1Alpha1IPAddressPool>("lballocator-system", "p");
        read.Metadata.ResourceVersion = null;
        var unconditional = await Assert.ThrowsAsync<HttpOperationException>(() => generic.ReplaceNamespacedAsync(read, "lballocator-system", "p"));

        Assert.Equal(HttpStatusCode.Conflict, again.Response.StatusCode);
        Assert.Equal(["192.0.2.0/24"], read.Spec.Addresses);
        Assert.Equal(1, read.Metadata.Generation);
        Assert.Equal((HttpStatusCode)422, unconditional.Response.StatusCode);
    }
}
