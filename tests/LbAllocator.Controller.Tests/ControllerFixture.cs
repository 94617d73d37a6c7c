using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace LbAllocator.Controller.Tests;

/// <summary>A test API server and controllers running against it, all stopped and removed at the end.</summary>
public sealed class ControllerFixture : IAsyncDisposable
{
    public const string Ns = "lballocator-system";
    private readonly List<RunningController> _controllers = [];

    private ControllerFixture(TestApiServer.TestApiServer server)
    {
        Server = server;
        Client = server.CreateClient();
    }

    public TestApiServer.TestApiServer Server { get; }
    public k8s.Kubernetes Client { get; }

    public static async Task<ControllerFixture> StartAsync() => new(await TestApiServer.TestApiServer.StartAsync(bookmarkInterval: TimeSpan.FromMilliseconds(500)));

    public sealed class RunningController(Reconciler reconciler, ControllerService service)
    {
        private bool _stopped;

        public Reconciler Reconciler { get; } = reconciler;

        /// <summary>Stops as SIGTERM would: the host cancels the service and waits for it.</summary>
        public async Task StopAsync()
        {
            if (_stopped)
            {
                return;
            }

            _stopped = true;
            await service.StopAsync(CancellationToken.None);
            service.Dispose();
        }
    }

    /// <summary>Starts a controller with its own client; with leader election on, several can run at once.</summary>
    public async Task<RunningController> StartControllerAsync(string identity = "test", bool leaderElection = false)
    {
        var options = new ControllerOptions
        {
            Namespace = Ns,
            Identity = identity,
            LeaderElection = leaderElection,
            LeaseDuration = TimeSpan.FromSeconds(3),
            RenewDeadline = TimeSpan.FromSeconds(2),
            RetryPeriod = TimeSpan.FromMilliseconds(500),
        };
        var client = Server.CreateClient();
        var metrics = new ControllerMetrics(Prometheus.Metrics.WithCustomRegistry(Prometheus.Metrics.NewCustomRegistry()));
        var reconciler = new Reconciler(client, options, metrics, NullLoggerFactory.Instance);
        var service = new ControllerService(client, reconciler, metrics, new LbAllocator.Hosting.Health(TimeProvider.System), Options.Create(options), NullLogger<ControllerService>.Instance);
        await service.StartAsync(CancellationToken.None);
        var running = new RunningController(reconciler, service);
        _controllers.Add(running);
        return running;
    }

    public Task CreatePoolAsync(string name, params string[] addresses) =>
        Client.CustomObjects.CreateNamespacedCustomObjectAsync(
            new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = name }, Spec = new IPAddressPoolSpec { Addresses = addresses } },
            Api.Group, Api.Version, Ns, "ipaddresspools");

    public Task<V1Service> CreateServiceAsync(string name, string ns = "default", Dictionary<string, string>? annotations = null, int port = 80) =>
        Client.CoreV1.CreateNamespacedServiceAsync(new V1Service
        {
            Metadata = new V1ObjectMeta { Name = name, Annotations = annotations },
            Spec = new V1ServiceSpec { Type = "LoadBalancer", Ports = [new V1ServicePort { Port = port, Protocol = "TCP" }], IpFamilies = ["IPv4"], IpFamilyPolicy = "SingleStack" },
        }, ns);

    public async Task<string?> IngressAsync(string name, string ns = "default")
    {
        var svc = await Client.CoreV1.ReadNamespacedServiceAsync(name, ns);
        return svc.Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip;
    }

    public async Task<IReadOnlyList<Corev1Event>> EventsAsync(string name, string ns = "default") =>
        [.. (await Client.CoreV1.ListNamespacedEventAsync(ns)).Items.Where(e => e.InvolvedObject.Name == name)];

    public Task<V1Alpha1IPAddressPool> PoolAsync(string name) =>
        Client.CustomObjects.GetNamespacedCustomObjectAsync<V1Alpha1IPAddressPool>(Api.Group, Api.Version, Ns, "ipaddresspools", name);

    /// <summary>Polls until the condition holds; fails with the description after the timeout.</summary>
    public static async Task Eventually(Func<Task<bool>> condition, string description, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (true)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (k8s.Autorest.HttpOperationException) when (DateTime.UtcNow < deadline)
            {
                // The server may be failing requests on purpose; try again.
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting until {description}");
            }

            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var controller in _controllers)
        {
            await controller.StopAsync();
        }

        Client.Dispose();
        await Server.DisposeAsync();
    }
}
